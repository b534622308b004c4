// Loaded from the same origin, so the Content-Security-Policy lets it run;
// it writes with textContent only, never innerHTML.
"use strict";

async function show(path, render) {
  try {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const data = await response.json();
    render(response.ok ? data : null, data);
  } catch (error) {
    render(null, { error: { message: String(error) } });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  show("/api/v1/health", (data, raw) => {
    document.getElementById("health").textContent = data ? data.status : raw.error.message;
  });
  show("/api/v1/items?limit=10", (data, raw) => {
    document.getElementById("items").textContent = data ? String(data.total) : raw.error.message;
    const list = document.getElementById("item-list");
    for (const item of data ? data.items : []) {
      const entry = document.createElement("li");
      entry.textContent = item.title;
      list.appendChild(entry);
    }
  });
});
