// batchbeam dashboard: plain JavaScript, no framework, nothing loaded from the network.
// Two modes: live (served by `batchbeam serve`, talking to /api) and static (report.html, with
// the session tree embedded in <script id="bb-tree" type="application/json">).
(function () {
  "use strict";

  var TOKEN_KEY = "batchbeam.token";
  var main = document.getElementById("bb-main");
  var connEl = document.getElementById("bb-conn");
  var STATIC_TREE = readEmbedded();
  var current = null;

  // ---------- small helpers ----------

  function readEmbedded() {
    var el = document.getElementById("bb-tree");
    if (!el) return null;
    try {
      return JSON.parse(el.textContent);
    } catch (e) {
      return { error: "the embedded session tree could not be read: " + e.message };
    }
  }

  /** An element: h("div", {class: "x", onclick: f}, child, "text", [more]). */
  function h(tag, props) {
    var el = document.createElement(tag);
    setProps(el, props);
    appendAll(el, Array.prototype.slice.call(arguments, 2));
    return el;
  }

  /** An SVG element. */
  function s(tag, props) {
    var el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setProps(el, props);
    appendAll(el, Array.prototype.slice.call(arguments, 2));
    return el;
  }

  function setProps(el, props) {
    if (!props) return;
    Object.keys(props).forEach(function (k) {
      var v = props[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "class") el.setAttribute("class", v);
      else if (k === "text") el.textContent = v;
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    });
  }

  /** Replaces an element's children, skipping null and false as h() does. */
  function fill(el) {
    el.replaceChildren();
    appendAll(el, Array.prototype.slice.call(arguments, 1));
    return el;
  }

  function appendAll(el, kids) {
    kids.forEach(function (k) {
      if (Array.isArray(k)) appendAll(el, k);
      else if (k === null || k === undefined || k === false) return;
      else el.append(k instanceof Node ? k : String(k));
    });
  }

  function money(v) {
    if (typeof v !== "number" || !isFinite(v)) return "–";
    if (v > 0 && v < 0.01) return "$" + v.toFixed(4);
    return "$" + v.toFixed(2);
  }

  function pct(part, whole) {
    if (typeof part !== "number" || typeof whole !== "number" || whole <= 0) return null;
    return Math.round((part / whole) * 1000) / 10;
  }

  function fraction(p) {
    if (typeof p !== "number" || !isFinite(p)) return null;
    var f = p > 1 ? p / 100 : p;
    return Math.max(0, Math.min(1, f));
  }

  function ago(iso) {
    if (!iso) return "";
    var t = Date.parse(iso);
    if (isNaN(t)) return String(iso);
    var d = (Date.now() - t) / 1000;
    if (d < 45) return "just now";
    if (d < 3600) return Math.round(d / 60) + " min ago";
    if (d < 86400) return Math.round(d / 3600) + " h ago";
    return new Date(t).toLocaleDateString();
  }

  function clock(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) return "";
    return new Date(t).toLocaleTimeString([], { hour12: false });
  }

  function words(s) {
    return String(s || "").replace(/_/g, " ");
  }

  function camel(s) {
    return String(s || "").replace(/_([a-z])/g, function (_, c) { return c.toUpperCase(); });
  }

  /** A job or session status as a badge class and its words. */
  function stateOf(status) {
    var st = String(status || "").toLowerCase();
    if (st.indexOf("wait") >= 0) return ["waiting", "waiting for batch"];
    if (st === "queued" || st === "pending" || st === "created") return ["queued", "queued"];
    if (st === "running" || st === "in_progress" || st === "resuming" || st === "started") return ["running", "running"];
    if (st === "succeeded" || st === "completed" || st === "finished" || st === "done") return ["succeeded", "succeeded"];
    if (st.indexOf("fail") === 0 || st === "error") return ["failed", "failed"];
    if (st.indexOf("cancel") === 0) return ["cancelled", "cancelled"];
    return ["queued", words(st) || "unknown"];
  }

  function terminal(status) {
    var k = stateOf(status)[0];
    return k === "succeeded" || k === "failed" || k === "cancelled";
  }

  function badge(status) {
    var st = stateOf(status);
    return h("span", { class: "badge " + st[0], text: st[1] });
  }

  function progressBar(p, status) {
    var f = fraction(p);
    var k = stateOf(status)[0];
    if (k === "succeeded") f = 1;
    var cls = "progress" + (k === "succeeded" ? " done" : k === "failed" ? " bad" : "");
    var bar = h("span", {});
    bar.style.width = ((f || 0) * 100).toFixed(1) + "%";
    return h("div", { class: cls, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": Math.round((f || 0) * 100) }, bar);
  }

  function listOf(data, keys) {
    if (Array.isArray(data)) return data;
    if (!data) return [];
    for (var i = 0; i < keys.length; i++) if (Array.isArray(data[keys[i]])) return data[keys[i]];
    return [];
  }

  function fmtRating(v) {
    return typeof v === "number" && isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)) : "–";
  }

  function setConn(kind, text) {
    if (!connEl) return;
    connEl.hidden = !kind;
    connEl.className = "conn" + (kind ? " " + kind : "");
    connEl.textContent = text || "";
  }

  // ---------- the API ----------

  var tokenPrompt = null;

  function askToken(refused) {
    if (tokenPrompt) return tokenPrompt;
    tokenPrompt = new Promise(function (resolve) {
      var input = h("input", { type: "password", id: "bb-token", autocomplete: "off",
        placeholder: "BATCHBEAM_API_TOKEN", "aria-label": "API token" });
      var overlay;
      function save(e) {
        e.preventDefault();
        var v = input.value.trim();
        if (!v) return;
        localStorage.setItem(TOKEN_KEY, v);
        overlay.remove();
        tokenPrompt = null;
        resolve(v);
      }
      overlay = h("div", { class: "overlay" },
        h("form", { class: "card dialog", onsubmit: save },
          h("h2", { text: "API token" }),
          h("p", { text: (refused ? "The server refused the saved token. " : "This server asks for a token. ") +
            "Enter the value of BATCHBEAM_API_TOKEN; it is kept in this browser only." }),
          input,
          h("div", { class: "form-actions" }, h("button", { class: "primary", type: "submit", text: "Save" }))));
      document.body.append(overlay);
      input.focus();
    });
    return tokenPrompt;
  }

  function api(path, opts) {
    opts = opts || {};
    var headers = { Accept: "application/json" };
    var token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    var body;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.json);
    }
    return fetch(path, { method: opts.method || "GET", headers: headers, body: body }).then(function (res) {
      if (res.status === 401) {
        if (token) localStorage.removeItem(TOKEN_KEY);
        return askToken(!!token).then(function () { return api(path, opts); });
      }
      return res.text().then(function (text) {
        var data = null;
        if (text) {
          try { data = JSON.parse(text); } catch (e) { data = { error: { message: text } }; }
        }
        if (!res.ok) {
          var err = new Error((data && data.error && data.error.message) || res.status + " " + res.statusText);
          err.status = res.status;
          err.body = data;
          throw err;
        }
        return data;
      });
    });
  }

  // Images of a token-protected server are fetched with the header and shown from blobs
  // (an <img> cannot send it); without a token they load directly.
  var blobs = {};
  function setImage(img, url) {
    if (!url) return;
    var token = STATIC_TREE ? null : localStorage.getItem(TOKEN_KEY);
    if (!token) { img.src = url; return; }
    if (blobs[url]) { img.src = blobs[url]; return; }
    fetch(url, { headers: { Authorization: "Bearer " + token } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.blob(); })
      .then(function (b) { blobs[url] = URL.createObjectURL(b); img.src = blobs[url]; })
      .catch(function () { img.alt = "image unavailable"; });
  }

  // ---------- routing ----------

  function route() {
    if (current && current.dispose) current.dispose();
    window.scrollTo(0, 0);
    if (STATIC_TREE) {
      current = jobView(STATIC_TREE.jobId || STATIC_TREE.sessionId, STATIC_TREE);
      return;
    }
    var m = location.hash.match(/^#\/job\/([^/?#]+)/);
    current = m ? jobView(decodeURIComponent(m[1]), null) : listView();
  }

  // ---------- the job list ----------

  var FILTERS = [["", "All"], ["queued", "Queued"], ["running", "Running"], ["waiting", "Waiting for batch"],
    ["completed", "Succeeded"], ["failed", "Failed"], ["cancelled", "Cancelled"]];

  function listView() {
    var alive = true;
    var timer = null;
    var filter = sessionStorage.getItem("batchbeam.filter") || "";
    document.title = "batchbeam · searches";
    setConn(null);

    var formCard = newSearchForm();
    formCard.hidden = true;
    var toggle = h("button", { class: "primary", id: "bb-new", type: "button", text: "New search",
      onclick: function () { formCard.hidden = !formCard.hidden; if (!formCard.hidden) formCard.querySelector("textarea").focus(); } });
    var filters = h("div", { class: "filters", role: "group", "aria-label": "Filter by state" });
    FILTERS.forEach(function (f) {
      filters.append(h("button", { type: "button", "data-status": f[0], class: f[0] === filter ? "active" : null,
        text: f[1], onclick: function () {
          filter = f[0];
          sessionStorage.setItem("batchbeam.filter", filter);
          Array.prototype.forEach.call(filters.children, function (b) {
            b.classList.toggle("active", b.getAttribute("data-status") === filter);
          });
          load();
        } }));
    });
    var body = h("div", { class: "card table-wrap", id: "bb-jobs" }, h("div", { class: "empty", text: "Loading…" }));
    fill(main, 
      h("div", { class: "list-head" }, h("h1", { text: "Searches" }), filters, h("span", { class: "spacer" }), toggle),
      formCard, body);

    function load() {
      clearTimeout(timer);
      var q = "api/jobs?limit=50" + (filter ? "&status=" + encodeURIComponent(filter) : "");
      api(q).then(function (data) {
        if (!alive) return;
        var jobs = listOf(data, ["data", "jobs", "items"]);
        learnPrompts(jobs, function () { if (alive) fill(body, jobsTable(jobs)); });
        fill(body, jobs.length ? jobsTable(jobs) : h("div", { class: "empty" },
          filter ? "No searches in this state." : "No searches yet. Start one with “New search”."));
        if (!jobs.length && !filter) formCard.hidden = false;
      }).catch(function (e) {
        if (!alive) return;
        fill(body, h("div", { class: "empty" }, "Could not load the searches: " + e.message));
      }).then(function () {
        if (alive) timer = setTimeout(load, 3000);
      });
    }
    load();
    return { dispose: function () { alive = false; clearTimeout(timer); } };
  }

  function jobsTable(jobs) {
    var rows = jobs.map(function (j) {
      var id = j.jobId || j.id;
      var href = "#/job/" + encodeURIComponent(id);
      var p = j.params || {};
      var meta = [];
      if (p.n) meta.push("n " + p.n + " · m " + p.m);
      if (p.iterations) meta.push(p.iterations + " iterations");
      if (p.plan) meta.push(p.plan);
      var stage = [];
      if (!terminal(j.status) || stateOf(j.status)[0] === "failed") {
        if (typeof j.iteration === "number") stage.push("iteration " + j.iteration);
        var sw = stageWords(j);
        if (sw) stage.push(sw);
      }
      var f = fraction(j.progress);
      var batches = batchList(j);
      var cost = j.cost || {};
      var saved = pct(cost.saved, cost.allStandard);
      return h("tr", { "data-job": id, onclick: function (e) { if (!e.target.closest("a")) location.hash = href; } },
        h("td", { class: "prompt-cell" }, h("a", { href: href, text: j.prompt || prompts[id] || id }),
          h("div", { class: "meta" }, h("span", { class: "mono", text: id }), meta.length ? " · " + meta.join(" · ") : "")),
        h("td", {}, badge(j.status), stage.length ? h("div", { class: "small muted", text: stage.join(" · ") }) : null),
        h("td", { class: "hide-sm progress-cell" }, progressBar(j.progress, j.status),
          h("div", { class: "small faint num", text: f === null ? "" : Math.round((terminal(j.status) && stateOf(j.status)[0] === "succeeded" ? 1 : f) * 100) + "%" })),
        h("td", { class: "hide-sm small" }, batches),
        h("td", { class: "right num nowrap" }, money(cost.total),
          h("div", { class: "small faint" }, typeof cost.allStandard === "number" ? "of " + money(cost.allStandard) + (saved !== null ? " · saved " + saved + "%" : "") : "")),
        h("td", { class: "hide-sm small muted nowrap", title: j.createdAt || j.created || "", text: ago(j.createdAt || j.created) }));
    });
    return h("table", { class: "jobs" },
      h("thead", {}, h("tr", {}, h("th", { text: "Search" }), h("th", { text: "State" }),
        h("th", { class: "hide-sm", text: "Progress" }), h("th", { class: "hide-sm", text: "Batches" }),
        h("th", { class: "right", text: "Cost" }), h("th", { class: "hide-sm", text: "Created" }))),
      h("tbody", {}, rows));
  }

  /** "stage 3 of 9" from a job's stage counter, or its stage's name when it is one. */
  function stageWords(j) {
    if (typeof j.stage === "number") {
      if (typeof j.stages === "number" && j.stages > 0) return "stage " + Math.min(j.stage + 1, j.stages) + " of " + j.stages;
      return null;
    }
    return j.stage ? words(j.stage) : null;
  }

  // A job's idea, by job id: the list's items do not carry it, a job's tree does (it never
  // changes, so each is asked for once, once the job has a session).
  var prompts = {};
  function learnPrompts(jobs, redraw) {
    jobs.forEach(function (j) {
      var id = j.jobId || j.id;
      if (j.prompt || prompts[id] !== undefined || !j.sessionId) return;
      prompts[id] = null;
      api("api/job/" + encodeURIComponent(id) + "/tree").then(function (t) {
        if (t && t.prompt) { prompts[id] = t.prompt; redraw(); }
      }).catch(function () { delete prompts[id]; });
    });
  }

  /** The batches of a job: states when the server gives them, else ids. */
  function batchList(j) {
    var list = listOf(j.batches, []);
    if (list.length) {
      return list.slice(-3).map(function (b) {
        return h("div", { class: "nowrap" }, h("span", { class: "mono faint", title: b.id || "", text: short(b.id) }), " ", words(b.status || b.state || ""));
      });
    }
    var ids = (j.batchIds && j.batchIds.length ? j.batchIds : j.batchId ? [j.batchId] : []);
    if (!ids.length) return h("span", { class: "faint", text: "–" });
    return [h("div", { text: ids.length + (ids.length === 1 ? " batch" : " batches") }),
      h("div", { class: "mono faint", title: ids.join("\n"), text: short(ids[ids.length - 1]) })];
  }

  function short(id) {
    id = String(id || "");
    return id.length > 16 ? id.slice(0, 14) + "…" : id;
  }

  // ---------- the new search form ----------

  function newSearchForm() {
    function field(name, label, input, hint, cls) {
      input.setAttribute("name", name);
      input.id = "f-" + name;
      return h("div", { class: "field" + (cls ? " " + cls : ""), "data-param": name },
        h("label", { for: input.id, text: label }), input,
        hint ? h("span", { class: "hint", text: hint }) : null,
        h("span", { class: "error", role: "alert" }));
    }
    function num(value, min, max) {
      return h("input", { type: "number", value: value, min: min, max: max, step: 1, inputmode: "numeric" });
    }
    function select(options, value) {
      return h("select", {}, options.map(function (o) {
        return h("option", { value: o[0], selected: o[0] === value, text: o[1] });
      }));
    }
    var batch = h("input", { type: "checkbox", checked: true });
    batch.setAttribute("name", "useBatch");
    batch.id = "f-useBatch";
    var formError = h("span", { class: "form-error", role: "alert" });
    var submit = h("button", { class: "primary", type: "submit", text: "Start search" });
    var form = h("form", { class: "card form", id: "bb-form", novalidate: true },
      h("h2", { text: "New search" }),
      h("div", { class: "form-grid" },
        field("prompt", "Idea", h("textarea", { rows: 2, placeholder: "a lighthouse in a storm" }), null, "wide"),
        field("n", "Candidates (n)", num(9, 1, 64), "per iteration"),
        field("m", "Survivors (m)", num(3, 1, 64), "n must be a multiple"),
        field("iterations", "Iterations", num(3, 1, 20)),
        field("plan", "Plan", select([["fused", "fused (9 stages)"], ["classic", "classic (14)"], ["judge_refines", "judge refines (7)"]], "fused")),
        field("judging", "Judging", select([["comparative", "comparative"], ["scoring", "scoring"]], "comparative")),
        field("ensemble", "Ensemble", num(3, 1, 9), "votes per judgement"),
        field("seed", "Seed", h("input", { type: "number", placeholder: "random", min: 0, step: 1 })),
        h("div", { class: "field check", "data-param": "useBatch" }, batch,
          h("label", { for: "f-useBatch", text: "Batch API (half price)" }), h("span", { class: "error", role: "alert" })),
        field("batchWaitMode", "Batch wait", select([["deferred", "deferred"], ["poll", "poll"]], "deferred")),
        field("deadline", "Deadline", h("input", { type: "text", placeholder: "e.g. 6h" }), "optional: hybrid tiers")),
      h("div", { class: "form-actions" }, submit, formError));

    function clearErrors() {
      formError.textContent = "";
      Array.prototype.forEach.call(form.querySelectorAll(".field.invalid"), function (f) {
        f.classList.remove("invalid");
        f.querySelector(".error").textContent = "";
      });
    }
    function showError(param, message) {
      var key = camel(param || "").split(/[.[]/)[0];
      var f = key && form.querySelector('.field[data-param="' + key + '"]');
      if (f) {
        f.classList.add("invalid");
        f.querySelector(".error").textContent = message;
        var input = f.querySelector("input, select, textarea");
        if (input) input.focus();
      } else {
        formError.textContent = message;
      }
    }
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      clearErrors();
      var v = function (name) { return form.elements[name].value.trim(); };
      var int = function (name) { var x = v(name); return x === "" ? null : Number(x); };
      if (!v("prompt")) { showError("prompt", "Describe the image to search a prompt for."); return; }
      var body = {
        prompt: v("prompt"), n: int("n"), m: int("m"), iterations: int("iterations"),
        plan: v("plan"), judging: v("judging"), ensemble: int("ensemble"),
        useBatch: batch.checked, batchWaitMode: v("batchWaitMode"),
      };
      if (v("seed") !== "") body.seed = int("seed");
      if (v("deadline") !== "") body.deadline = v("deadline");
      submit.disabled = true;
      api("api/beam-search", { method: "POST", json: body }).then(function (res) {
        location.hash = "#/job/" + encodeURIComponent(res.jobId);
      }).catch(function (err) {
        var e2 = (err.body && err.body.error) || {};
        showError(e2.param, e2.message || err.message);
      }).then(function () { submit.disabled = false; });
    });
    return form;
  }

  // ---------- one job ----------

  var REFRESH_TREE = { stage_finished: 1, iteration_judged: 1, session_finished: 1, job_finished: 1,
    job_failed: 1, job_cancelled: 1, calls_done: 1, job_resumed: 1 };

  function jobView(id, staticTree) {
    var alive = true;
    var live = !staticTree;
    var job = null;
    var tree = staticTree;
    var open = {};           // which <details> are open, by key, across re-renders
    var cards = {};          // candidate id -> { key, el }
    var lastSeq = -1;
    var ws = null;
    var failures = 0;
    var pollTimer = null;
    var reconnectTimer = null;
    var refreshTimer = null;
    var jobTimer = null;
    var ended = false;
    var liveStage = "";

    var head = h("div", { class: "card job-head", id: "bb-head" });
    var best = h("div", { id: "bb-best" });
    var curve = h("div", { class: "card panel curve", id: "bb-curve" });
    var costs = h("div", { class: "card panel", id: "bb-costs" });
    var iters = h("div", { id: "bb-iterations" });
    var logList = h("div", { class: "log", id: "bb-log" }, h("div", { class: "ev-empty muted small", text: "Waiting for the job's events…" }));
    var logPanel = live ? h("div", { class: "card section", id: "bb-events" },
      h("div", { class: "panel log-head" }, h("h2", { text: "Events" })), logList) : null;

    fill(main, head, best, h("div", { class: "split section" }, curve, costs), iters, logPanel);
    if (!live) setConn(null);
    render();

    if (live) {
      // The tree exists once the job has a session; the socket opens once the API has
      // answered, so that a token asked for is known.
      loadJob().then(function () {
        if (hasSession()) loadTree();
        connect();
      });
    }

    function loadJob() {
      return api("api/job/" + encodeURIComponent(id)).then(function (j) {
        if (!alive) return;
        var wasOver = terminal(status());
        job = j;
        // The job's end can be seen before the tree's last refresh: fetch the final tree now,
        // so that the page never shows an ended job with the tree of a stage before.
        if (!wasOver && terminal(status()) && hasSession()) loadTree();
        renderHead();
      }).catch(function (e) {
        if (!alive) return;
        if (e.status === 404) fill(main, h("div", { class: "card empty" }, "No job " + id + ". ",
          h("a", { href: "#/", text: "All searches" })));
      });
    }

    function loadTree() {
      return api("api/job/" + encodeURIComponent(id) + "/tree").then(function (t) {
        if (!alive || !t) return;
        tree = t;
        render();
      }).catch(function () { /* not started yet: the job header says why */ });
    }

    function scheduleTree() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(loadTree, 250);
    }
    function scheduleJob() {
      clearTimeout(jobTimer);
      jobTimer = setTimeout(loadJob, 150);
    }

    function hasSession() {
      return !!(job && (job.sessionId || tree));
    }

    function status() {
      return (job && job.status) || (tree && tree.status) || "";
    }

    // The socket replays past events, then sends new ones; it cannot send headers, so the
    // token goes in the query. After repeated failures the page polls instead.
    function connect() {
      if (!alive) return;
      var url = new URL("api/job/" + encodeURIComponent(id) + "/events", location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      var token = localStorage.getItem(TOKEN_KEY);
      if (token) url.searchParams.set("token", token);
      setConn("retry", failures ? "reconnecting…" : "connecting…");
      try {
        ws = new WebSocket(url.toString());
      } catch (e) {
        onClose();
        return;
      }
      ws.onopen = function () {
        failures = 0;
        stopPolling();
        setConn("live", "live");
      };
      ws.onmessage = function (m) {
        var ev;
        try { ev = JSON.parse(m.data); } catch (e) { return; }
        if (typeof ev.seq === "number") {
          if (ev.seq <= lastSeq) return;
          lastSeq = ev.seq;
        }
        onEvent(ev);
      };
      ws.onclose = onClose;
    }

    function onClose() {
      ws = null;
      if (!alive) return;
      if (ended || terminal(status())) {
        setConn(null);
        return;
      }
      failures += 1;
      if (failures >= 3) startPolling();
      var delay = Math.min(30000, 1000 * Math.pow(2, failures - 1));
      setConn("retry", failures >= 3 ? "polling (socket retry in " + Math.round(delay / 1000) + " s)" : "reconnecting…");
      reconnectTimer = setTimeout(connect, delay);
    }

    function startPolling() {
      if (pollTimer) return;
      var tick = function () {
        var before = job ? [job.status, job.stage, job.iteration].join("|") : "";
        loadJob().then(function () {
          if (!alive) return;
          var after = job ? [job.status, job.stage, job.iteration].join("|") : "";
          if (after !== before && hasSession()) loadTree();
          if (terminal(status())) { stopPolling(); return; }
          pollTimer = setTimeout(tick, 3000);
        });
      };
      pollTimer = setTimeout(tick, 0);
    }
    function stopPolling() {
      clearTimeout(pollTimer);
      pollTimer = null;
    }

    function onEvent(ev) {
      addLog(ev);
      // The server closes the socket after the job's last event: no reconnecting then.
      if (ev.type === "job_finished" || ev.type === "job_failed" || ev.type === "job_cancelled") ended = true;
      if (REFRESH_TREE[ev.type]) scheduleTree();
      scheduleJob();
      if (ev.type === "stage_started") {
        liveStage = [ev.stage && words(ev.stage), ev.tier && "on " + ev.tier].filter(Boolean).join(" ");
        if (job && typeof ev.iteration === "number") job.iteration = ev.iteration;
        renderHead();
      }
      if (ev.type === "batch_submitted") { liveStage += " · waiting for the batch"; renderHead(); }
    }

    function addLog(ev) {
      var kind = /fail|cancel/.test(ev.type) ? " bad" : /finished|judged|succeeded/.test(ev.type) ? " good" : "";
      var row = h("div", { class: "ev" },
        h("span", { class: "t", title: ev.at || "", text: clock(ev.at) }),
        h("span", { class: "ty" + kind, text: words(ev.type) }),
        h("span", { class: "d", text: describeEvent(ev) }));
      var placeholder = logList.querySelector(".ev-empty");
      if (placeholder) placeholder.remove();
      logList.prepend(row);
      while (logList.children.length > 300) logList.lastChild.remove();
    }

    function render() {
      renderHead();
      renderBest();
      renderCurve();
      renderCosts();
      renderIterations();
    }

    function renderHead() {
      var t = tree || {};
      var j = job || {};
      var st = status();
      var prompt = t.prompt || j.prompt || "";
      document.title = "batchbeam · " + (prompt || id);
      var p = t.params || j.params || {};
      var cost = t.cost || j.cost || null;
      var stageBits = [];
      if (!terminal(st) && typeof j.iteration === "number") stageBits.push("iteration " + j.iteration);
      if (!terminal(st)) {
        if (liveStage) stageBits.push(liveStage);
        var sw = stageWords(j);
        if (sw && sw !== liveStage) stageBits.push(sw);
      }
      var f = fraction(j.progress);
      if (stateOf(st)[0] === "succeeded") f = 1;
      var saved = cost ? pct(cost.saved, cost.allStandard) : null;
      var ids = j.batchIds && j.batchIds.length ? j.batchIds : j.batchId ? [j.batchId] : [];
      var paramsText = [p.n && "n " + p.n, p.m && "m " + p.m, p.iterations && p.iterations + " iterations", p.plan,
        p.judging, p.ensemble && "ensemble " + p.ensemble, p.seed !== undefined && p.seed !== null && "seed " + p.seed]
        .filter(Boolean).join(" · ");
      var cancel = live && st && !terminal(st) ? h("button", { type: "button", id: "bb-cancel", text: "Cancel",
        onclick: function (e) {
          e.target.disabled = true;
          api("api/job/" + encodeURIComponent(id) + "/cancel", { method: "POST" }).then(loadJob)
            .catch(function (err) { alert("Could not cancel: " + err.message); e.target.disabled = false; });
        } }) : null;
      var stats = [
        stat("Best", t.best ? fmtRating(t.best.rating) : "–", t.best ? t.best.id : "not judged yet"),
        stat("Cost", cost ? money(cost.total) : "–", cost ? "of " + money(cost.allStandard) + " all-standard" : ""),
        stat("Saved", saved !== null ? saved + "%" : "–", cost && typeof cost.saved === "number" ? money(cost.saved) + " against all-standard" : ""),
      ];
      if (cost && typeof cost.forecast === "number") stats.push(stat("Forecast", money(cost.forecast), "before it sent anything"));
      if (t.draftBest && t.best) stats.push(stat("Polish", t.best.id, t.draftBest === t.best.id ? "confirmed the drafts' pick" : "overturned the drafts' pick " + t.draftBest));
      if (live) stats.push(stat("Batches", String(ids.length), ids.length ? short(ids[ids.length - 1]) : "none yet", ids.join("\n")));
      else stats.push(stat("Session", t.sessionId ? short(t.sessionId) : "–", "static report", t.sessionId));
      fill(head, 
        h("div", { class: "crumbs" }, live ? h("a", { href: "#/", text: "← All searches" }) : "Report",
          " · ", h("span", { class: "mono", text: id || "" })),
        h("h1", { id: "bb-prompt", text: prompt || "…" }),
        h("div", { class: "line" }, st ? h("span", { id: "bb-status" }, badge(st)) : null,
          live ? progressBar(f, st) : null,
          live && f !== null ? h("span", { class: "num", text: Math.round(f * 100) + "%" }) : null,
          stageBits.length ? h("span", { id: "bb-stage", text: stageBits.join(" · ") }) : null,
          j.estimatedCompletionTime && !terminal(st) ? h("span", { text: "expected by " + clock(j.estimatedCompletionTime) }) : null,
          h("span", { class: "faint", text: paramsText }),
          cancel),
        h("div", { class: "stats" }, stats),
        cost && cost.simulated ? h("div", { class: "sim-note" },
          "Simulated models: nothing was billed. Costs are what OpenAI would charge for the same calls at list prices.") : null,
        t.stopped ? h("div", { class: "sim-note", id: "bb-stopped", text: "Stopped early: " + t.stopped }) : null,
        j.error || (t.error && typeof t.error === "string") ? h("div", { class: "error-box", text: String(j.error && (j.error.message || j.error) || t.error) }) : null);
    }

    function stat(k, v, d, title) {
      return h("div", { class: "stat", title: title || null }, h("div", { class: "k", text: k }),
        h("div", { class: "v", text: v }), h("div", { class: "d", text: d || "" }));
    }

    function renderBest() {
      var b = tree && tree.best;
      if (!b) { best.replaceChildren(); return; }
      var c = findCandidate(b.id);
      var img = h("img", { alt: "best image, " + b.id });
      setImage(img, b.imageUrl);
      fill(best, h("div", { class: "card best section", id: "bb-best-card" }, img,
        h("div", {}, h("div", { class: "label" }, (live && !terminal(status()) ? "Best so far · " : "Best prompt · "), h("a", { href: "#", class: "mono",
          onclick: function (e) { e.preventDefault(); focusCandidate(b.id); }, text: b.id }),
          typeof b.rating === "number" ? " · rating " + fmtRating(b.rating) : ""),
          h("p", { class: "prompt", text: b.prompt || "" }),
          c && (c.what || c.how) ? h("div", { class: "parts" }, h("b", { text: "What" }), h("span", { text: c.what || "–" }),
            h("b", { text: "How" }), h("span", { text: c.how || "–" })) : null,
          c && c.strengths && c.strengths.length ? h("ul", { class: "plus" }, c.strengths.slice(0, 4).map(function (x) { return h("li", { text: x }); })) : null)));
    }

    function findCandidate(cid) {
      var found = null;
      listOf(tree && tree.iterations, []).forEach(function (it) {
        listOf(it.candidates, []).forEach(function (c) { if (c.id === cid) found = c; });
      });
      return found;
    }

    function renderCurve() {
      var pts = curvePoints();
      if (!pts.length) {
        fill(curve, h("h2", { text: "Best rating per iteration" }), h("p", { class: "muted small", text: "No iteration judged yet." }));
        return;
      }
      var W = 480, H = 200, L = 52, R = 16, T = 18, B = 30;
      var ys = pts.map(function (p) { return p.y; });
      var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
      var pad = (hi - lo) * 0.15 || Math.max(1, Math.abs(hi) * 0.02);
      var step = niceStep((hi - lo + 2 * pad) / 3);
      lo = Math.floor((lo - pad) / step) * step;
      hi = Math.ceil((hi + pad) / step) * step;
      var maxIt = Math.max(1, pts[pts.length - 1].x, (tree.params && tree.params.iterations - 1) || 0);
      var X = function (x) { return L + (W - L - R) * (maxIt ? x / maxIt : 0.5); };
      var Y = function (y) { return T + (H - T - B) * (1 - (y - lo) / (hi - lo)); };
      var kids = [];
      for (var gv = lo; gv <= hi + step / 2; gv += step) {
        kids.push(s("line", { class: "grid", x1: L, x2: W - R, y1: Y(gv), y2: Y(gv) }));
        kids.push(s("text", { x: L - 6, y: Y(gv) + 4, "text-anchor": "end", text: tick(gv, step) }));
      }
      for (var it = 0; it <= maxIt; it++) {
        kids.push(s("text", { x: X(it), y: H - 8, "text-anchor": "middle", text: "it " + it }));
      }
      var d = pts.map(function (p, i) { return (i ? "L" : "M") + X(p.x).toFixed(1) + "," + Y(p.y).toFixed(1); }).join(" ");
      if (pts.length > 1) {
        kids.push(s("path", { class: "area", d: d + " L" + X(pts[pts.length - 1].x).toFixed(1) + "," + (H - B) + " L" + X(pts[0].x).toFixed(1) + "," + (H - B) + " Z" }));
        kids.push(s("path", { class: "line", d: d }));
      }
      pts.forEach(function (p) {
        kids.push(s("circle", { class: "dot", cx: X(p.x), cy: Y(p.y), r: 4.5 }, s("title", { text: "iteration " + p.x + ": " + fmtRating(p.y) })));
        kids.push(s("text", { class: "val", x: X(p.x), y: Y(p.y) - 10, "text-anchor": "middle", text: fmtRating(p.y) }));
      });
      kids.push(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
      var scaleNote = tree.ratingScale === "elo"
        ? "One scale for the whole session: 1500 is the first iteration's average, +400 is ten times the odds of being preferred."
        : tree.ratingScale === "score" ? "The judges' 0–10 score." : null;
      fill(curve, h("h2", { text: "Best rating per iteration" }),
        s("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "best rating per iteration" }, kids),
        scaleNote ? h("p", { class: "muted small", text: scaleNote }) : null);
    }

    function niceStep(raw) {
      var mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
      var f = raw / mag;
      return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    }

    function tick(v, step) {
      return step >= 1 ? String(Math.round(v)) : v.toFixed(step >= 0.1 ? 1 : 2);
    }

    function curvePoints() {
      if (!tree) return [];
      var raw = listOf(tree.ratingCurve, []).map(function (r) { return { x: r.iteration, y: r.bestRating }; });
      if (!raw.length) {
        raw = listOf(tree.iterations, []).map(function (it) { return { x: it.iteration, y: it.bestRating }; });
      }
      return raw.filter(function (p) { return typeof p.x === "number" && typeof p.y === "number" && isFinite(p.y); });
    }

    function renderCosts() {
      var c = tree && tree.cost;
      var rows = c ? listOf(c.byOperation, []) : [];
      if (!rows.length) {
        fill(costs, h("h2", { text: "Cost by operation" }), h("p", { class: "muted small", text: "No calls priced yet." }));
        return;
      }
      fill(costs, h("h2", { text: "Cost by operation" }), h("div", { class: "table-wrap" },
        h("table", { class: "cost-table" },
          h("thead", {}, h("tr", {}, h("th", { text: "Operation" }), h("th", { text: "Tier" }), h("th", { class: "right", text: "Calls" }),
            h("th", { class: "right", text: "Cost" }), h("th", { class: "right", text: "All-standard" }), h("th", { class: "right", text: "Saved" }))),
          h("tbody", {}, rows.map(function (r) {
            var sv = pct(r.standardCost - r.cost, r.standardCost);
            return h("tr", {}, h("td", { text: words(r.operation) }),
              h("td", {}, h("span", { class: "tier " + (r.tier || ""), text: r.tier || "" })),
              h("td", { class: "right num", text: String(r.calls) }),
              h("td", { class: "right num", text: money(r.cost) }),
              h("td", { class: "right num", text: money(r.standardCost) }),
              h("td", { class: "right num", text: sv === null ? "–" : sv + "%" }));
          })),
          h("tfoot", {}, h("tr", {}, h("td", { text: "Total" }), h("td", {}),
            h("td", { class: "right num", text: String(rows.reduce(function (a, r) { return a + (r.calls || 0); }, 0)) }),
            h("td", { class: "right num", text: money(c.total) }), h("td", { class: "right num", text: money(c.allStandard) }),
            h("td", { class: "right num", text: (pct(c.saved, c.allStandard) === null ? "–" : pct(c.saved, c.allStandard) + "%") }))))));
    }

    function renderIterations() {
      var list = tree ? listOf(tree.iterations, []) : [];
      if (!list.length) {
        fill(iters, h("div", { class: "card empty section", text: live ? "The first candidates appear here once they are written." : "This session has no candidates." }));
        cards = {};
        return;
      }
      var children = {};
      list.forEach(function (it) {
        listOf(it.candidates, []).forEach(function (c) {
          if (c.parent) (children[c.parent] = children[c.parent] || []).push(c.id);
        });
      });
      var running = live && !terminal(status());
      var seen = {};
      var sections = list.slice().reverse().map(function (it) {
        // Survivors first: an earlier iteration's survivors were judged again as parents in the
        // next pool, so their rank is the later one.
        var cands = listOf(it.candidates, []).slice().sort(function (a, b) {
          if (!!a.survived !== !!b.survived) return a.survived ? -1 : 1;
          var ra = typeof a.rank === "number" ? a.rank : 1e9, rb = typeof b.rank === "number" ? b.rank : 1e9;
          return ra - rb || String(a.id).localeCompare(String(b.id), undefined, { numeric: true });
        });
        var survivors = cands.filter(function (c) { return c.survived; }).length;
        var failed = cands.filter(function (c) { return c.failed; }).length;
        var sub = [cands.length + " candidates"];
        if (survivors) sub.push(survivors + " survived");
        if (failed) sub.push(failed + " failed");
        if (it.bestId) sub.push("best " + it.bestId + (typeof it.bestRating === "number" ? " (" + fmtRating(it.bestRating) + ")" : ""));
        return h("section", { class: "iteration", id: "iteration-" + it.iteration, "data-iteration": it.iteration },
          h("div", { class: "section-head" }, h("h2", { text: "Iteration " + it.iteration }), h("span", { class: "sub", text: sub.join(" · ") })),
          h("div", { class: "gallery" }, cands.map(function (c) {
            seen[c.id] = 1;
            return card(c, it, children[c.id] || [], running);
          })));
      });
      Object.keys(cards).forEach(function (k) { if (!seen[k]) delete cards[k]; });
      fill(iters, sections);
    }

    // A card is rebuilt only when its candidate changed, so images do not reload.
    function card(c, it, kids, running) {
      var key = JSON.stringify([c, it.bestId, kids, running]);
      var old = cards[c.id];
      if (old && old.key === key) return old.el;
      var el = buildCard(c, it, kids, running);
      cards[c.id] = { key: key, el: el };
      return el;
    }

    function buildCard(c, it, kids, running) {
      var isBest = it.bestId === c.id;
      var wrap = h("div", { class: "img-wrap" });
      if (c.imageUrl && !c.failed) {
        var img = h("img", { alt: "image of " + c.id, loading: "lazy", width: 512, height: 512 });
        setImage(img, c.imageUrl);
        wrap.append(img);
      } else {
        wrap.append(h("div", { class: "placeholder", text: c.failed ? "no image" : running ? "rendering…" : "no image" }));
      }
      if (typeof c.rank === "number") wrap.append(h("span", { class: "rank", text: "#" + c.rank }));
      var mark = c.failed ? h("span", { class: "badge failed", text: "failed" })
        : c.survived ? h("span", { class: "badge succeeded", text: "survived" })
        : typeof c.rank === "number" ? h("span", { class: "badge cancelled", text: "dropped" }) : null;
      if (mark) wrap.append(h("span", { class: "mark" }, mark));
      var score = typeof c.rating === "number"
        ? h("span", { class: "score", title: "rating" }, fmtRating(c.rating),
          typeof c.score === "number" && Math.abs(c.score - c.rating) > 1e-9 ? h("small", { text: " · " + c.score.toFixed(1) + "/10" }) : null)
        : typeof c.score === "number" ? h("span", { class: "score", title: "score" }, c.score.toFixed(1), h("small", { text: "/10" })) : null;
      var prompt = h("div", { class: "prompt", title: "show all of it", role: "button", tabindex: 0, "aria-expanded": "false",
        text: c.prompt || (running ? "writing…" : ""),
        onclick: togglePrompt, onkeydown: function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); togglePrompt(); } } });
      function togglePrompt() {
        prompt.setAttribute("aria-expanded", String(prompt.classList.toggle("open")));
      }
      var lineage = [];
      if (c.parent) lineage.push("from ", parentLink(c.parent));
      if (kids.length) {
        if (lineage.length) lineage.push(" · ");
        lineage.push("children ");
        kids.forEach(function (k, i) { if (i) lineage.push(", "); lineage.push(parentLink(k)); });
      }
      var judged = (c.reasons && c.reasons.length) || (c.strengths && c.strengths.length) || (c.weaknesses && c.weaknesses.length) || c.critique;
      return h("article", { class: "card cand" + (c.survived ? " survived" : "") + (c.failed ? " failed" : "") + (isBest ? " is-best" : ""),
        id: "cand-" + c.id, "data-id": c.id },
        wrap,
        h("div", { class: "body" },
          h("div", { class: "row" }, h("span", { class: "id", text: c.id }), isBest ? h("span", { class: "badge running plain", text: "best" }) : null, score),
          lineage.length ? h("div", { class: "lineage" }, lineage) : null,
          prompt,
          c.failed ? h("div", { class: "fail-msg", text: c.failed }) : null,
          (c.what || c.how) ? details(c.id + ":prompt", "WHAT / HOW", [
            h("div", { class: "k", text: "What" }), h("p", { text: c.what || "–" }),
            h("div", { class: "k", text: "How" }), h("p", { text: c.how || "–" })]) : null,
          judged ? details(c.id + ":judges", "Judges", [
            listBlock("Reasons", c.reasons, ""), listBlock("Strengths", c.strengths, "plus"),
            listBlock("Weaknesses", c.weaknesses, "minus"),
            c.critique ? [h("div", { class: "k", text: "Critique" }), h("p", { text: c.critique })] : null]) : null));
    }

    function listBlock(title, items, cls) {
      if (!items || !items.length) return null;
      return [h("div", { class: "k", text: title }), h("ul", { class: cls || null }, items.map(function (x) { return h("li", { text: x }); }))];
    }

    function details(key, title, body) {
      var d = h("details", { open: !!open[key] }, h("summary", { text: title }), body);
      d.addEventListener("toggle", function () { open[key] = d.open; });
      return d;
    }

    function parentLink(pid) {
      return h("a", { href: "#", "data-target": pid, text: pid, onclick: function (e) { e.preventDefault(); focusCandidate(pid); } });
    }

    function focusCandidate(cid) {
      var el = document.getElementById("cand-" + cid);
      if (!el) return;
      el.scrollIntoView({ behavior: "smooth", block: "center" });
      el.classList.add("highlight");
      setTimeout(function () { el.classList.remove("highlight"); }, 2400);
    }

    return {
      dispose: function () {
        alive = false;
        if (ws) { ws.onclose = null; ws.close(); }
        clearTimeout(pollTimer); clearTimeout(reconnectTimer); clearTimeout(refreshTimer); clearTimeout(jobTimer);
        setConn(null);
      },
    };
  }

  /** One line for an event: its interesting fields, in words. The orchestrator's progress
   * events carry snake_case fields, the job's own camelCase: both are read. */
  function describeEvent(ev) {
    var f = function (camelName, snake) {
      return ev[camelName] !== undefined ? ev[camelName] : snake ? ev[snake] : undefined;
    };
    var num = function (v) { return typeof v === "number"; };
    var bestId = f("bestId", "best_id");
    var bestScore = f("bestScore", "best_score");
    var wins = f("wins");
    var batchIds = f("batchIds", "batch_ids");
    switch (ev.type) {
      case "stage_started":
        return [ev.stage && words(ev.stage), num(ev.iteration) && "iteration " + ev.iteration,
          ev.tier && "on " + ev.tier, num(ev.calls) && ev.calls + " calls",
          num(ev.reused) && ev.reused > 0 && ev.reused + " from checkpoints"].filter(Boolean).join(", ");
      case "batch_submitted":
        return [num(ev.requests) && ev.requests + " requests submitted to the Batch API", f("batchId", "batch_id")].filter(Boolean).join(" · ");
      case "stage_finished":
        return [ev.stage && words(ev.stage), num(ev.succeeded) && ev.succeeded + " ok",
          num(ev.failed) && ev.failed + " failed", num(ev.seconds) && ev.seconds.toFixed(1) + " s",
          Array.isArray(batchIds) && batchIds.length && batchIds.map(short).join(", ")].filter(Boolean).join(", ");
      case "iteration_judged":
        return ["iteration " + ev.iteration, bestId && "best " + bestId,
          Array.isArray(wins) && "won " + wins[0] + " of " + wins[1],
          num(f("bestRating", "best_rating")) ? "rating " + fmtRating(f("bestRating", "best_rating")) : num(bestScore) ? "score " + bestScore.toFixed(1) : null]
          .filter(Boolean).join(", ");
      case "session_finished":
        return [bestId && "best " + bestId, num(bestScore) && "score " + bestScore.toFixed(1),
          num(ev.cost) && "cost " + money(ev.cost)].filter(Boolean).join(", ");
      default:
        return Object.keys(ev).filter(function (k) {
          return !{ seq: 1, at: 1, jobId: 1, type: 1, session: 1, sessionId: 1 }[k] && ev[k] !== null && typeof ev[k] !== "object";
        }).map(function (k) {
          var v = ev[k];
          return words(k).replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase() + " " + (num(v) && !Number.isInteger(v) ? v.toFixed(2) : v);
        }).join(", ");
    }
  }

  // ---------- start ----------

  if (STATIC_TREE) {
    var note = document.getElementById("bb-note");
    if (note) note.textContent = "session report";
    var footer = document.getElementById("bb-footer");
    if (footer) footer.textContent = "A static report written by batchbeam run; images are read from the images/ folder beside it.";
    if (STATIC_TREE.error && !STATIC_TREE.iterations) {
      fill(main, h("div", { class: "card empty", text: STATIC_TREE.error }));
    } else {
      route();
    }
  } else {
    window.addEventListener("hashchange", route);
    route();
  }
})();
