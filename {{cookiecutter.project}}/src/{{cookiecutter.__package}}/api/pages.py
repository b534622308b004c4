"""The one HTML page: it proves in a browser that the CSP lets the app's own script run."""

from flask import Blueprint, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    return render_template("index.html")
