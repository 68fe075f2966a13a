// EventForge dashboard: span details on click, and an opt-in auto-refresh. No framework.
"use strict";

(function () {
  function el(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "style") node.style.cssText = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function kvTable(pairs) {
    if (!pairs.length) return el("p", { class: "muted small", text: "(none)" });
    return el("table", { class: "kv" }, pairs.map(([key, value]) =>
      el("tr", {}, [el("th", { text: key }), el("td", { text: value })])));
  }

  // --- waterfall: click a span to see its attributes, events and links -------------------------
  const dataNode = document.getElementById("span-data");
  const panel = document.getElementById("span-detail");
  const spans = dataNode ? JSON.parse(dataNode.textContent) : {};

  function select(spanId, scroll) {
    const span = spans[spanId];
    if (!span || !panel) return;
    document.querySelectorAll(".wf-row.selected").forEach((row) => row.classList.remove("selected"));
    const row = document.querySelector(`.wf-row[data-span="${spanId}"]`);
    if (row) {
      row.classList.add("selected");
      if (scroll) row.scrollIntoView({ block: "center" });
    }
    history.replaceState(null, "", `#span-${spanId}`);
    const status = span.status === "ERROR"
      ? el("span", { class: "badge bad", text: `✗ ERROR${span.status_description ? ": " + span.status_description : ""}` })
      : el("span", { class: "badge", text: span.status });
    const parts = [
      el("div", { class: "detail-title" }, [
        el("span", { class: "svc", style: `background: ${span.colour}`, text: span.service }),
        el("strong", { text: span.name }),
      ]),
      el("div", { class: "small" }, [status, " ", el("span", { class: "muted", text: `${span.kind.toLowerCase()} · starts +${span.offset} · lasts ${span.duration}` })]),
    ];
    if (span.async_hop) {
      parts.push(el("p", { class: "small" }, [el("span", { class: "hop", text: "⇢ async hop " }), span.async_hop]));
    }
    parts.push(el("h3", { text: "Span" }), kvTable([
      ["trace_id", span.trace_id],
      ["span_id", span.span_id],
      ["parent_span_id", span.parent_span_id || "(root)"],
      ["request_id", span.request_id || "-"],
      ["scope", span.scope || "-"],
    ]));
    parts.push(el("h3", { text: `Attributes (${span.attributes.length})` }), kvTable(span.attributes));
    parts.push(el("h3", { text: `Events (${span.events.length})` }));
    if (!span.events.length) parts.push(el("p", { class: "muted small", text: "(none)" }));
    for (const event of span.events) {
      parts.push(el("div", { class: "small" }, [el("strong", { text: event.name }), el("span", { class: "muted", text: ` at +${event.offset}` })]));
      if (event.attributes.length) parts.push(kvTable(event.attributes));
    }
    parts.push(el("h3", { text: `Links (${span.links.length})` }));
    if (!span.links.length) parts.push(el("p", { class: "muted small", text: "(none)" }));
    for (const link of span.links) {
      const inPage = spans[link.span_id];
      const target = inPage
        ? el("a", { href: `#span-${link.span_id}`, "data-link": link.span_id, text: link.text })
        : el("a", { href: `/traces/${link.trace_id}#span-${link.span_id}`, text: link.text });
      parts.push(el("div", { class: "small" }, [target]));
    }
    panel.replaceChildren(el("div", { class: "detail" }, parts));
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("[data-link]");
    if (link) {
      event.preventDefault();
      select(link.getAttribute("data-link"), true);
      return;
    }
    const row = event.target.closest(".wf-row.span");
    if (row) select(row.dataset.span, false);
  });
  document.addEventListener("keydown", (event) => {
    const row = event.target.closest && event.target.closest(".wf-row.span");
    if (row && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      select(row.dataset.span, false);
    }
  });
  if (location.hash.startsWith("#span-")) select(location.hash.slice(6), true);

  // --- database spans: shown unless unticked (remembered) -------------------------------------
  const showDb = document.getElementById("show-db");
  const traces = document.querySelector(".wf-traces");
  if (showDb && traces) {
    showDb.checked = localStorage.getItem("eventforge-show-db") !== "0";
    const apply = () => traces.classList.toggle("hide-db", !showDb.checked);
    showDb.addEventListener("change", () => {
      localStorage.setItem("eventforge-show-db", showDb.checked ? "1" : "0");
      apply();
    });
    apply();
  }

  // --- auto-refresh (off unless ticked; remembered per page) -----------------------------------
  const refresh = document.getElementById("auto-refresh");
  if (refresh) {
    const key = `eventforge-refresh:${location.pathname}`;
    refresh.checked = localStorage.getItem(key) === "1";
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      if (refresh.checked) timer = setTimeout(() => location.reload(), 5000);
    };
    refresh.addEventListener("change", () => {
      localStorage.setItem(key, refresh.checked ? "1" : "0");
      arm();
    });
    arm();
  }
})();
