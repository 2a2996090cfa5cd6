// The "Test campaign" page of rankcore serve. Plain JavaScript, no dependencies.
//
// The page reads the served campaigns from console/campaigns, builds the request boto3 would send
// (GetPersonalizedRanking or GetRecommendations) from the form, POSTs it to the same JSON route
// and shows the answer as a table, or the API's error type and message. The form's state is kept
// in the URL query, and a page opened with a complete query runs it at once, so a result can be
// shared as a link. document.body.dataset.state is "loading", "done" or "error" after each run,
// and dataset.runs counts the runs (both for tests and scripts driving the page).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const ROUTES = {ranking: "personalize-ranking", recommendations: "recommendations"};
  const FORMS = {ranking: "ranking-form", recommendations: "recommendations-form"};
  let campaigns = [];
  let tab = "ranking";
  let rowSeq = 0;
  let runs = 0;

  // ------------------------------------------------------------------ campaign and its fields

  function campaign() {
    const sel = $("campaign");
    const opt = sel.options[sel.selectedIndex];
    if (!opt) return null;
    return campaigns.find((c) => c.arn === opt.value) || {name: opt.textContent, arn: opt.value,
      filters: [], context: {}, itemColumns: []};
  }

  function fillCampaigns() {
    const sel = $("campaign");
    sel.replaceChildren(...campaigns.map((c) => new Option(c.name, c.arn)));
  }

  // A campaign named in the query but not served still gets an option (and its ARN), so the
  // request goes out and the API's own answer (ResourceNotFoundException) is what is shown.
  function selectCampaign(value) {
    const sel = $("campaign");
    let c = campaigns.find((x) => x.name === value || x.arn === value);
    if (!c && value) {
      let arn = value;
      if (!value.startsWith("arn:") && campaigns.length) {
        arn = campaigns[0].arn.replace(/campaign\/.*$/, "campaign/" + value);
      }
      if (![...sel.options].some((o) => o.value === arn)) {
        sel.add(new Option(value + " (not served)", arn));
      }
      sel.value = arn;
    } else if (c) {
      sel.value = c.arn;
    }
    campaignChanged();
  }

  function campaignChanged() {
    const c = campaign();
    $("campaign-arn").textContent = c ? c.arn : "";
    for (const sel of document.querySelectorAll(".filter-select")) {
      const opts = [new Option("No filter", "")];
      for (const f of (c ? c.filters : [])) opts.push(new Option(f.name, f.name));
      sel.replaceChildren(...opts);
      renderFilterValues(sel, {});
    }
    for (const fs of document.querySelectorAll("fieldset.columns")) renderColumns(fs, []);
    renderContextLists(c);
  }

  function filterByName(name) {
    const c = campaign();
    return (c ? c.filters : []).find((f) => f.name === name);
  }

  function renderFilterValues(sel, values) {
    const fs = $(sel.dataset.values);
    const f = filterByName(sel.value);
    fs.querySelectorAll(".field").forEach((n) => n.remove());
    const names = f ? f.placeholders : [];
    fs.hidden = names.length === 0;
    for (const name of names) {
      const id = fs.id + "-" + name;
      const div = document.createElement("div");
      div.className = "field";
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = "$" + name;
      const input = document.createElement("input");
      input.id = id;
      input.dataset.placeholder = name;
      input.autocomplete = "off";
      input.spellcheck = false;
      input.placeholder = '"value1","value2"';
      input.value = values[name] || "";
      div.append(label, input);
      fs.append(div);
    }
    if (f) fs.title = f.expression;
  }

  function renderColumns(fs, checked) {
    const c = campaign();
    const list = fs.querySelector(".column-list");
    const cols = c ? c.itemColumns : [];
    list.replaceChildren();
    if (!cols.length) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = "No item columns listed for this campaign.";
      list.append(p);
      return;
    }
    for (const col of cols) {
      const id = fs.id + "-" + col;
      const label = document.createElement("label");
      label.className = "check";
      label.htmlFor = id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = id;
      box.value = col;
      box.checked = checked.includes(col);
      label.append(box, " " + col);
      list.append(label);
    }
  }

  function renderContextLists(c) {
    document.querySelectorAll("datalist.ctx").forEach((d) => d.remove());
    const ctx = c ? c.context : {};
    const fields = document.createElement("datalist");
    fields.id = "ctx-fields";
    fields.className = "ctx";
    fields.append(...Object.keys(ctx).map((k) => new Option(k)));
    document.body.append(fields);
    Object.entries(ctx).forEach(([k, values], i) => {
      const d = document.createElement("datalist");
      d.id = "ctx-values-" + i;
      d.className = "ctx";
      d.dataset.field = k;
      d.append(...values.map((v) => new Option(v)));
      document.body.append(d);
    });
    document.querySelectorAll(".kv-row").forEach(linkValueList);
  }

  function linkValueList(row) {
    const key = row.querySelector(".kv-key").value;
    const d = [...document.querySelectorAll("datalist.ctx")].find((x) => x.dataset.field === key);
    const value = row.querySelector(".kv-value");
    if (d) value.setAttribute("list", d.id); else value.removeAttribute("list");
  }

  // ------------------------------------------------------------------ context rows

  function addRow(fieldset, key, value) {
    const n = ++rowSeq;
    const row = $("row-template").content.firstElementChild.cloneNode(true);
    const [kl, vl] = row.querySelectorAll("label");
    const k = row.querySelector(".kv-key");
    const v = row.querySelector(".kv-value");
    k.id = fieldset.id + "-key-" + n;
    v.id = fieldset.id + "-value-" + n;
    kl.htmlFor = k.id;
    vl.htmlFor = v.id;
    k.value = key || "";
    v.value = value || "";
    k.setAttribute("list", "ctx-fields");
    k.addEventListener("input", () => linkValueList(row));
    const remove = row.querySelector(".remove-row");
    remove.setAttribute("aria-label", "Remove this context row");
    remove.addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      (next ? next.querySelector(".kv-key") : fieldset.querySelector(".add-row")).focus();
    });
    fieldset.querySelector(".row-list").append(row);
    linkValueList(row);
    return row;
  }

  function rows(fieldset) {
    return [...fieldset.querySelectorAll(".kv-row")]
      .map((r) => [r.querySelector(".kv-key").value.trim(), r.querySelector(".kv-value").value])
      .filter(([k]) => k);
  }

  // ------------------------------------------------------------------ form <-> request <-> query

  function splitIds(text) {
    return text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  }

  function filterValues(sel) {
    const out = {};
    for (const input of $(sel.dataset.values).querySelectorAll("input")) {
      if (input.value.trim()) out[input.dataset.placeholder] = input.value.trim();
    }
    return out;
  }

  function checkedColumns(fs) {
    return [...fs.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);
  }

  // The request body, exactly as boto3 would send it (empty fields left out).
  function buildRequest() {
    const c = campaign();
    const req = {campaignArn: c ? c.arn : ""};
    const p = tab === "ranking" ? "rk" : "rc";
    const user = $(p + "-user").value.trim();
    if (user) req.userId = user;
    if (tab === "ranking") {
      req.inputList = splitIds($("rk-items").value);
    } else {
      const item = $("rc-item").value.trim();
      if (item) req.itemId = item;
      const num = $("rc-num").value.trim();
      if (num) req.numResults = Number(num);
    }
    const ctx = rows($(p + "-context"));
    if (ctx.length) req.context = Object.fromEntries(ctx);
    const fsel = $(p + "-filter");
    const f = filterByName(fsel.value);
    if (f) {
      req.filterArn = f.arn;
      const fv = filterValues(fsel);
      if (Object.keys(fv).length) req.filterValues = fv;
    }
    if (tab === "recommendations") {
      const promo = promotion();
      if (promo) req.promotions = [promo];
    }
    const cols = checkedColumns($(p + "-columns"));
    if (cols.length) req.metadataColumns = {ITEMS: cols};
    return req;
  }

  function promotion() {
    const name = $("rc-promo-name").value.trim();
    const percent = $("rc-promo-percent").value.trim();
    const sel = $("rc-promo-filter");
    if (!name && !percent && !sel.value) return null;
    const promo = {};
    if (name) promo.name = name;
    if (percent) promo.percentPromotedItems = Number(percent);
    const f = filterByName(sel.value);
    if (f) {
      promo.filterArn = f.arn;
      const fv = filterValues(sel);
      if (Object.keys(fv).length) promo.filterValues = fv;
    }
    return promo;
  }

  function pairs(obj) {
    return Object.entries(obj || {}).map(([k, v]) => k + ":" + v);
  }

  function parsePairs(list) {
    const out = {};
    for (const text of list) {
      const i = text.indexOf(":");
      if (i > 0) out[text.slice(0, i)] = text.slice(i + 1);
    }
    return out;
  }

  // The query of the current form: campaign by name, filters by name, IDs comma-separated.
  function toQuery() {
    const q = new URLSearchParams();
    const c = campaign();
    const p = tab === "ranking" ? "rk" : "rc";
    if (c) q.set("campaign", campaigns.includes(c) ? c.name : c.arn);
    q.set("tab", tab);
    const set = (k, v) => { if (v !== "" && v !== undefined) q.set(k, v); };
    set("userId", $(p + "-user").value.trim());
    if (tab === "ranking") {
      set("inputList", splitIds($("rk-items").value).join(","));
    } else {
      set("itemId", $("rc-item").value.trim());
      set("numResults", $("rc-num").value.trim());
    }
    for (const [k, v] of rows($(p + "-context"))) q.append("context", k + ":" + v);
    const fsel = $(p + "-filter");
    set("filter", fsel.value);
    for (const pv of pairs(filterValues(fsel))) q.append("filterValues", pv);
    if (tab === "recommendations") {
      set("promotionName", $("rc-promo-name").value.trim());
      set("promotionPercent", $("rc-promo-percent").value.trim());
      const psel = $("rc-promo-filter");
      set("promotionFilter", psel.value);
      for (const pv of pairs(filterValues(psel))) q.append("promotionFilterValues", pv);
    }
    set("metadataColumns", checkedColumns($(p + "-columns")).join(","));
    return q;
  }

  function setFilter(sel, name, values) {
    sel.value = name || "";
    if (sel.value !== (name || "")) sel.value = "";
    renderFilterValues(sel, values);
  }

  // Fill the form from a query; true when it is complete enough to run.
  function fromQuery(q) {
    if (q.get("campaign")) selectCampaign(q.get("campaign"));
    showTab(q.get("tab") === "recommendations" ? "recommendations" : "ranking");
    const p = tab === "ranking" ? "rk" : "rc";
    $(p + "-user").value = q.get("userId") || "";
    if (tab === "ranking") {
      $("rk-items").value = splitIds(q.get("inputList") || "").join("\n");
    } else {
      $("rc-item").value = q.get("itemId") || "";
      if (q.get("numResults")) $("rc-num").value = q.get("numResults");
    }
    const ctxSet = $(p + "-context");
    ctxSet.querySelectorAll(".kv-row").forEach((r) => r.remove());
    for (const [k, v] of Object.entries(parsePairs(q.getAll("context")))) addRow(ctxSet, k, v);
    setFilter($(p + "-filter"), q.get("filter"), parsePairs(q.getAll("filterValues")));
    if (tab === "recommendations") {
      $("rc-promo-name").value = q.get("promotionName") || "";
      $("rc-promo-percent").value = q.get("promotionPercent") || "";
      setFilter($("rc-promo-filter"), q.get("promotionFilter"), parsePairs(q.getAll("promotionFilterValues")));
    }
    renderColumns($(p + "-columns"), (q.get("metadataColumns") || "").split(",").filter(Boolean));
    if (!q.get("campaign")) return false;
    if (tab === "ranking") return Boolean(q.get("userId") && q.get("inputList"));
    return Boolean(q.get("userId") || q.get("itemId"));
  }

  // ------------------------------------------------------------------ tabs

  function showTab(name) {
    tab = name;
    for (const [t, formId] of Object.entries(FORMS)) {
      $(formId).hidden = t !== name;
      const b = $("tab-" + t);
      b.setAttribute("aria-selected", String(t === name));
      b.tabIndex = t === name ? 0 : -1;
    }
  }

  // ------------------------------------------------------------------ running a request

  function setState(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text;
  }

  function errorType(response, body) {
    let t = response.headers.get("x-amzn-errortype") || (body && (body.__type || body.code)) || "";
    t = t.split(":")[0];
    if (t.includes("#")) t = t.slice(t.lastIndexOf("#") + 1);
    return t || "HTTP " + response.status;
  }

  function showError(type, status, message) {
    $("result").hidden = true;
    $("error").hidden = false;
    $("error-type").textContent = type;
    $("error-status").textContent = status ? "HTTP " + status : "";
    $("error-message").textContent = message;
    setState("error", "The request failed.");
  }

  async function run() {
    const req = buildRequest();
    history.replaceState(null, "", "?" + toQuery().toString());
    setState("loading", "Running…");
    $("error").hidden = true;
    const t0 = performance.now();
    let response;
    let body = null;
    try {
      response = await fetch(ROUTES[tab], {method: "POST", body: JSON.stringify(req),
        headers: {"content-type": "application/json"}});
      const text = await response.text();
      try { body = JSON.parse(text); } catch (e) { body = {message: text}; }
    } catch (e) {
      showError("NetworkError", 0, String(e && e.message ? e.message : e));
      return finish();
    }
    if (!response.ok) {
      showError(errorType(response, body), response.status,
        (body && (body.message || body.Message)) || response.statusText);
      return finish();
    }
    const items = tab === "ranking" ? body.personalizedRanking : body.itemList;
    renderTable(items || [], req);
    $("recommendation-id").textContent = body.recommendationId || "";
    const unknown = (items || []).filter((x) => typeof x.score !== "number").length;
    const promoted = (items || []).filter((x) => x.promotionName).length;
    let text = (items || []).length + (tab === "ranking" ? " items ranked" : " items recommended");
    if (unknown) text += ", " + unknown + " unknown";
    if (promoted) text += ", " + promoted + " promoted";
    setState("done", text + " · " + Math.round(performance.now() - t0) + " ms");
    return finish();
  }

  function finish() {
    document.body.dataset.runs = String(++runs);
  }

  function cell(tag, text, cls) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }

  function renderTable(items, req) {
    const requested = (req.metadataColumns && req.metadataColumns.ITEMS) || [];
    const cols = [...requested];
    for (const it of items) {
      for (const k of Object.keys(it.metadata || {})) if (!cols.includes(k)) cols.push(k);
    }
    const promotions = tab === "recommendations";
    const head = document.createElement("tr");
    head.append(cell("th", "Rank", "num"), cell("th", "Item ID"), cell("th", "Score", "score-col"));
    if (promotions) head.append(cell("th", "Promotion"));
    for (const c of cols) head.append(cell("th", c));
    $("result-table").tHead.replaceChildren(head);
    const scores = items.map((x) => x.score).filter((s) => typeof s === "number");
    const top = Math.max(0, ...scores);
    const body = $("result-table").tBodies[0];
    body.replaceChildren(...items.map((it, i) => {
      const tr = document.createElement("tr");
      const known = typeof it.score === "number";
      tr.dataset.itemId = it.itemId;
      tr.dataset.score = known ? String(it.score) : "";
      if (!known) { tr.dataset.unknown = "true"; tr.className = "unknown"; }
      if (it.promotionName) { tr.dataset.promotion = it.promotionName; tr.classList.add("promoted"); }
      const id = cell("td", undefined, "item");
      id.append(cell("code", it.itemId));
      if (!known) id.append(" ", cell("span", "unknown item", "badge unknown-badge"));
      const sc = cell("td", undefined, "score-col");
      if (known) {
        const wrap = cell("div", undefined, "score");
        const bar = cell("span", undefined, "bar");
        bar.style.width = (top > 0 ? Math.max(0, it.score) / top * 100 : 0).toFixed(2) + "%";
        wrap.append(bar, cell("span", String(it.score), "value"));
        wrap.title = "bar relative to the top score";
        sc.append(wrap);
      } else {
        sc.append(cell("span", "no score", "value muted"));
      }
      tr.append(cell("td", String(i + 1), "num"), id, sc);
      if (promotions) {
        const pc = cell("td");
        if (it.promotionName) pc.append(cell("span", it.promotionName, "badge promo-badge"));
        tr.append(pc);
      }
      for (const c of cols) {
        const v = it.metadata ? it.metadata[c] : undefined;
        tr.append(cell("td", v === undefined ? "" : String(v), "meta"));
      }
      return tr;
    }));
    $("result").hidden = false;
  }

  // ------------------------------------------------------------------ wiring

  async function copyLink() {
    history.replaceState(null, "", "?" + toQuery().toString());
    try {
      await navigator.clipboard.writeText(location.href);
      $("status").textContent = "Link copied.";
    } catch (e) {
      $("status").textContent = "Link: " + location.href;
    }
  }

  function wire() {
    $("campaign").addEventListener("change", () => {
      campaignChanged();
      history.replaceState(null, "", "?" + toQuery().toString());
    });
    for (const b of document.querySelectorAll("[role=tab]")) {
      b.addEventListener("click", () => showTab(b.dataset.tab));
      b.addEventListener("keydown", (e) => {
        if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
        const other = b.dataset.tab === "ranking" ? "recommendations" : "ranking";
        showTab(other);
        $("tab-" + other).focus();
      });
    }
    for (const sel of document.querySelectorAll(".filter-select")) {
      sel.addEventListener("change", () => renderFilterValues(sel, {}));
    }
    for (const b of document.querySelectorAll(".add-row")) {
      b.addEventListener("click", () => addRow($(b.dataset.target)).querySelector(".kv-key").focus());
    }
    for (const form of Object.values(FORMS)) {
      $(form).addEventListener("submit", (e) => { e.preventDefault(); run(); });
    }
    for (const b of document.querySelectorAll(".copy-link")) b.addEventListener("click", copyLink);
    $("rk-items").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $("ranking-form").requestSubmit(); }
    });
  }

  async function start() {
    wire();
    setState("loading", "Loading campaigns…");
    try {
      const response = await fetch("console/campaigns");
      if (!response.ok) throw new Error("HTTP " + response.status);
      campaigns = (await response.json()).campaigns;
    } catch (e) {
      showError("NetworkError", 0, "Could not list the campaigns: " + e.message);
      return;
    }
    fillCampaigns();
    campaignChanged();
    const q = new URLSearchParams(location.search);
    if (fromQuery(q)) {
      await run();
    } else {
      setState("idle", "Choose a campaign, fill the form and submit.");
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
