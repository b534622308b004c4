"""The common way to write the same read: Flask, Flask-SQLAlchemy over SQLite, flask-talisman.

The bench compares the stack's GET /api/v1/items/<id> with this app's, both
reading one row of an `items` table (id, title, body, created_at, updated_at)
and answering it as JSON, under the same gunicorn settings (the project's
worker class, count, threads and keep-alive). The database is a file in the
bench's work directory, named by BENCH_SQLALCHEMY_DATABASE; the bench writes
its one row with seed() before it loads the app.

flask-talisman runs with its defaults except force_https, which is off: TLS
ends at nginx, and the same app is also loaded directly over plain http on
loopback, where force_https would answer every request with a redirect. As any
Flask app behind one proxy would, it believes that proxy's X-Forwarded-For and
-Proto (ProxyFix): behind nginx the request is then https and Talisman sends
HSTS, as the stack does.
"""

import os
from datetime import UTC, datetime

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_talisman import Talisman
from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.middleware.proxy_fix import ProxyFix

DATABASE = "BENCH_SQLALCHEMY_DATABASE"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def now():
    return datetime.now(UTC)


class Item(db.Model):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)

    def as_dict(self):
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "created_at": stamp(self.created_at),
            "updated_at": stamp(self.updated_at),
        }


def stamp(moment):
    """ISO 8601 in UTC, as the stack writes it (SQLite hands the time back without its zone)."""
    return moment.replace(tzinfo=UTC).isoformat(timespec="milliseconds")


def create_app(database=None):
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{database or os.environ[DATABASE]}"
    db.init_app(app)
    Talisman(app, force_https=False)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)

    @app.get("/api/v1/items/<int:item_id>")
    def get_item(item_id):
        return db.get_or_404(Item, item_id).as_dict()

    return app


def seed(database, title, body):
    """The items table and one row in it: the row's id."""
    app = create_app(database)
    with app.app_context():
        db.create_all()
        item = Item(title=title, body=body)
        db.session.add(item)
        db.session.commit()
        item_id = item.id
        db.engine.dispose()
    return item_id
