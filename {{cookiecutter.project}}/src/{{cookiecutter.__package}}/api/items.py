"""Items over HTTP: models from the contract's fields, and the five routes.

The first resource, and the one README.md's "Adding a resource" copies.
"""

from flask import url_for

from .. import contract
from .resource import BAD_BODY, CALLS, NOT_FOUND, IdPath, Page, blueprint, calls, models, no_content

ItemIn, Item, ItemList = models("Item", contract.items)

api = blueprint("items", __name__)
items = calls(contract.items)


@api.get("/items", responses={200: ItemList, **CALLS})
def list_items(query: Page):
    """List items, oldest first."""
    return items.list(query.limit, query.offset)


@api.post("/items", responses={201: Item, **BAD_BODY, **CALLS})
def create_item(body: ItemIn):
    """Create an item; the Location header points at it."""
    item = items.create(**body.model_dump())
    return item, 201, {"Location": url_for(".get_item", id=item["id"])}


@api.get("/items/<id:id>", responses={200: Item, **NOT_FOUND, **CALLS})
def get_item(path: IdPath):
    """Read one item."""
    return items.get(path.id)


@api.put("/items/<id:id>", responses={200: Item, **BAD_BODY, **NOT_FOUND, **CALLS})
def update_item(path: IdPath, body: ItemIn):
    """Replace an item's title and body."""
    return items.update(path.id, **body.model_dump())


@api.delete("/items/<id:id>", responses={204: None, **NOT_FOUND, **CALLS})
def delete_item(path: IdPath):
    """Delete one item."""
    items.delete(path.id)
    return no_content()
