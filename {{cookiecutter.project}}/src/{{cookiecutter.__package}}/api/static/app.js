// Loaded from the same origin, so the Content-Security-Policy lets it run;
// it writes with textContent only, never innerHTML. It keeps no token: with
// anonymous reads off, the list of items says that the API needs one.
"use strict";

async function show(path, render) {
  try {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const data = await response.json();
    render(response.ok ? data : null, data, response.status);
  } catch (error) {
    render(null, { error: { message: String(error) } }, 0);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  show("/api/v1/health", (data, raw) => {
    document.getElementById("health").textContent = data ? data.status : raw.error.message;
  });
  show("/api/v1/items?limit=10", (data, raw, status) => {
    const items = document.getElementById("items");
    if (status === 401) {
      items.textContent = "the API needs a token (Authorization: Bearer); this page keeps none";
      return;
    }
    items.textContent = data ? String(data.total) : raw.error.message;
    const list = document.getElementById("item-list");
    for (const item of data ? data.items : []) {
      const entry = document.createElement("li");
      entry.textContent = item.title;
      list.appendChild(entry);
    }
  });
});
