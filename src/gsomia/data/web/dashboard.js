// gsomia node dashboard: draws /dashboard/state and follows /dashboard/events (SSE).
// Text is always set with textContent: item content is data, never markup.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var map = document.getElementById("map");
  var proj = JSON.parse(map.getAttribute("data-projection"));
  var overlay = document.getElementById("overlay");
  var coverageLayer = document.getElementById("coverage");
  var showCoverage = document.getElementById("show-coverage");

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, title) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (title) { var t = document.createElementNS(SVG, "title"); t.textContent = title; e.appendChild(t); }
    return e;
  }
  function xy(lat, lon) {
    return [(lon - proj.lon_min) * proj.kx, (proj.lat_max - lat) * proj.ky];
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function showError(text) {
    var box = document.getElementById("error");
    box.hidden = !text; box.textContent = text || "";
  }

  function warningKey(d) { return [d.launch, d.regime, d.seed, d.track, d.level].join("|"); }
  // A message that retracts or passes some regions leaves the rest of its level standing.
  function standing(d) {
    return d.active ? d.active.length > 0 : (d.action !== "retracted" && d.action !== "passed");
  }

  // One malformed record (say, stored before its properties were checked on ingest) must
  // not stop the others from being drawn: each item is drawn on its own, and a failure is
  // counted and shown, not thrown.
  var skipped = 0;
  function each(list, draw) {
    (list || []).forEach(function (it) {
      try { draw(it); } catch (e) { skipped += 1; }
    });
  }
  function finite(v) { return typeof v === "number" && isFinite(v); }
  function drawable(it) { return it && !it.problem && it.data && typeof it.data === "object"; }
  function isWarning(it) {
    var d = it && it.data;
    return it && it.kind === "warning" && drawable(it) && typeof d.action === "string" &&
      finite(d.at_s) && Array.isArray(d.regions);
  }

  function pointKeys(it) {
    return it.data.points.filter(function (p) {
      return Array.isArray(p) && finite(p[0]) && finite(p[1]);
    }).map(function (p) { return p[0] + "," + p[1]; });
  }

  // A warning centre publishes its flight path again with every impact prediction, each
  // longer than the last: a path all of whose points a longer one of the same originator
  // holds is drawn once, as that longer one.
  function supersededTracks(items) {
    var tracks = items.filter(function (it) {
      return drawable(it) && it.kind === "track" && Array.isArray(it.data.points);
    }).map(function (it) { return {it: it, keys: pointKeys(it)}; });
    var gone = [];
    tracks.forEach(function (a) {
      var covered = tracks.some(function (b) {
        if (b === a || b.it.originator !== a.it.originator || b.keys.length <= a.keys.length) {
          return false;
        }
        var held = {};
        b.keys.forEach(function (k) { held[k] = true; });
        return a.keys.every(function (k) { return held[k]; });
      });
      if (covered) gone.push(a.it);
    });
    return gone;
  }

  function drawMap(items) {
    clear(overlay);
    Array.prototype.forEach.call(map.querySelectorAll(".warned"), function (p) {
      p.classList.remove("warned");
    });
    var superseded = [];
    try { superseded = supersededTracks(items || []); } catch (e) { superseded = []; }
    each(items, function (it) {
      if (!drawable(it)) return;
      if (it.kind === "track" && Array.isArray(it.data.points) &&
          superseded.indexOf(it) < 0) {
        var pts = it.data.points.filter(function (p) {
          return Array.isArray(p) && finite(p[0]) && finite(p[1]);
        }).map(function (p) { return xy(p[0], p[1]).join(","); }).join(" ");
        overlay.appendChild(svg("polyline", {"class": "track", points: pts}, it.summary));
      } else if (it.kind === "ipp" && finite(it.data.lat_deg) && finite(it.data.lon_deg) &&
                 it.data.ellipse && finite(it.data.ellipse.semi_major_km) &&
                 finite(it.data.ellipse.semi_minor_km) && finite(it.data.ellipse.orientation_deg)) {
        var c = xy(it.data.lat_deg, it.data.lon_deg), e = it.data.ellipse;
        var rx = Math.max(e.semi_major_km * proj.px_per_km, 1.5);
        var ry = Math.max(e.semi_minor_km * proj.px_per_km, 1.5);
        overlay.appendChild(svg("ellipse", {"class": "ipp", cx: c[0], cy: c[1], rx: rx, ry: ry,
          transform: "rotate(" + (e.orientation_deg - 90) + " " + c[0] + " " + c[1] + ")"},
          it.summary + " at T+" + Math.round(it.data.at_s) + " s"));
      }
    });
    each(activeWarnings(items), function (d) {
      (d.active || d.regions).forEach(function (name) {
        Array.prototype.forEach.call(map.querySelectorAll("path.land"), function (p) {
          if (p.getAttribute("data-region") === name) p.classList.add("warned");
        });
      });
      if (!finite(d.impact_lat) || !finite(d.impact_lon)) return;
      var c = xy(d.impact_lat, d.impact_lon);
      var r = Math.max((d.semi_major_km || 20) * proj.px_per_km, 6);
      var label = "WARNING " + d.party + ": " + ((d.active || d.regions).join(", ") || "impact area");
      overlay.appendChild(svg("circle", {"class": "warning-area", cx: c[0], cy: c[1], r: r}, label));
      // Keep the label inside the frame: to the left of points in the east.
      var east = c[0] > proj.width * 0.6;
      var t = svg("text", {"class": "warning-label", x: east ? c[0] + r : c[0] - r,
                           y: c[1] - r - 4, "text-anchor": east ? "end" : "start"});
      t.textContent = label; overlay.appendChild(t);
    });
  }

  function activeWarnings(items) {
    var last = {};
    each(items, function (it) {
      if (!isWarning(it)) return;
      var k = warningKey(it.data);
      if (!last[k] || last[k].at_s <= it.data.at_s) last[k] = it.data;
    });
    return Object.keys(last).map(function (k) { return last[k]; })
      .filter(standing);
  }

  var LEVELS = {alert: 0, notice: 1, information: 2};
  function impactText(d) {
    if (!finite(d.time_to_impact_s)) return "";
    return "impact in " + Math.round(d.time_to_impact_s) + " s (at T+" +
      Math.round(d.at_s + d.time_to_impact_s) + " s)";
  }

  // What stands now, one line per party, launch and level: the regions still warned, why,
  // and the time to impact the latest message gave; above the history of every message.
  function drawStanding(items) {
    var list = document.getElementById("warnings");
    var box = document.getElementById("standing");
    if (!box) {
      box = el("div", {id: "standing", "aria-live": "polite"});
      list.parentNode.insertBefore(box, list);
    }
    clear(box);
    var now = activeWarnings(items).sort(function (a, b) {
      return (LEVELS[a.level] || 0) - (LEVELS[b.level] || 0) || b.at_s - a.at_s;
    });
    if (!now.length) { box.appendChild(el("p", {"class": "empty"}, "No warning stands.")); return; }
    each(now, function (d) {
      var level = String(d.level || "alert");
      var row = el("div", {"class": "standing level-" + level, "data-level": level,
                           "data-party": d.party});
      row.appendChild(el("strong", {"class": "level"}, level.toUpperCase()));
      row.appendChild(el("span", {"class": "regions"}, " " + ((d.active || d.regions).join(", ") || "no region")));
      row.appendChild(el("span", {"class": "why"}, d.reason ? " — " + d.reason : ""));
      row.appendChild(el("span", {"class": "tti"}, impactText(d) ? "; " + impactText(d) : ""));
      row.appendChild(el("span", {"class": "muted"}, " (" + d.party + (d.regime ? ", " + d.regime : "") + ", " +
                                                     d.action + " at T+" + Math.round(d.at_s) + " s)"));
      box.appendChild(row);
    });
  }

  function drawWarnings(items) {
    var list = document.getElementById("warnings");
    clear(list);
    drawStanding(items);
    var ws = items.filter(isWarning);
    if (!ws.length) { list.appendChild(el("li", {"class": "empty"}, "No warnings.")); return; }
    var active = {};
    activeWarnings(items).forEach(function (d) { active[warningKey(d)] = d; });
    ws.sort(function (a, b) { return b.data.at_s - a.data.at_s; });
    each(ws, function (it) {
      var d = it.data, live = active[warningKey(d)] === d && standing(d);
      var li = el("li", {"class": "warning " + (live ? "active" : "retracted"),
                         "data-action": d.action, "data-level": String(d.level || "alert")},
        String(d.level || "alert").toUpperCase() + " " + d.action.toUpperCase() + " T+" +
        Math.round(d.at_s) + " s: " + (d.regions.join(", ") || "no region") +
        (d.reason ? " — " + d.reason : "") + " (" + d.party + (d.regime ? ", " + d.regime : "") + ")" +
        (impactText(d) ? ", " + impactText(d) : "") + " [" + it.marking + "]");
      list.appendChild(li);
    });
  }

  function drawItems(doc) {
    var body = document.querySelector("#items tbody");
    clear(body);
    if (!doc.items.length) {
      // One text whether nothing is held or nothing is readable: the page says nothing of
      // items the reader may not see.
      var tr = el("tr", {"class": "empty-row"});
      tr.appendChild(el("td", {colspan: 5, "class": "empty"}, "No item you may read."));
      body.appendChild(tr); return;
    }
    each(doc.items.slice().reverse(), function (it) {
      var tr = el("tr", {"data-id": it.id});
      var first = el("td"); first.appendChild(el("code", {}, it.id));
      first.appendChild(el("div", {"class": "muted"}, it.type + " from " + it.originator + ", " + it.added_at));
      tr.appendChild(first);
      tr.appendChild(el("td", {"class": "marking"}, it.marking));
      var summary = el("td", {"class": "summary"}, it.summary);
      if (it.problem) {
        tr.className = "malformed";
        summary.appendChild(el("div", {"class": "error"}, "Not drawn on the map: " + it.problem));
      }
      tr.appendChild(summary);
      tr.appendChild(el("td", {}, (it.custody || []).map(function (c) {
        return c.event + " at " + c.holder + (c.provider ? " from " + c.provider : "") +
          (c.agreement ? " under " + c.agreement : "") + ": " + c.marking;
      }).join(" → ")));
      tr.appendChild(el("td", {}, it.receipts && it.receipts.length ? it.receipts.map(function (r) {
        return r.direction + " " + r.peer + " " + r.at; }).join("; ") : "—"));
      body.appendChild(tr);
    });
  }

  function drawAgreements(list) {
    var box = document.getElementById("agreements");
    clear(box);
    if (!list.length) { box.appendChild(el("p", {"class": "empty"}, "No agreements in the catalogue.")); return; }
    var table = el("table");
    var head = el("tr"); ["agreement", "parties", "state", "history"].forEach(function (h) {
      head.appendChild(el("th", {}, h)); });
    table.appendChild(head);
    list.forEach(function (a) {
      var tr = el("tr", {"data-agreement": a.id});
      tr.appendChild(el("td", {title: a.title}, a.id));
      tr.appendChild(el("td", {}, a.parties.join(", ")));
      tr.appendChild(el("td", {}, a.state + (a.since ? " since " + a.since : "") +
        (a.terminates_on ? " (ends " + a.terminates_on + ")" : "")));
      var det = el("details"); det.appendChild(el("summary", {}, a.history.length + " event(s)"));
      var ul = el("ul"); a.history.forEach(function (h) {
        ul.appendChild(el("li", {}, h.on + " " + h.kind + (h.by ? " by " + h.by : "") + (h.note ? ": " + h.note : "")));
      });
      det.appendChild(ul); var td = el("td"); td.appendChild(det); tr.appendChild(td);
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  function drawAudit(audit) {
    var box = document.getElementById("audit");
    clear(box);
    if (audit.shown === false) { box.appendChild(el("p", {"class": "empty"}, "The audit log is shown only to users cleared for all this node may hold: its size counts every item.")); return; }
    if (audit.error) { box.appendChild(el("p", {"class": "error"}, "Audit log unavailable: " + audit.error)); return; }
    box.appendChild(el("p", {}, audit.size + " event(s) in the log."));
    var h = audit.head;
    if (!h) { box.appendChild(el("p", {"class": "empty"}, "No signed tree head yet.")); return; }
    var dl = el("dl", {id: "tree-head"});
    [["size", h.size], ["root", h.root], ["timestamp", h.timestamp], ["key", h.key],
     ["signature", h.signature]].forEach(function (p) {
      dl.appendChild(el("dt", {}, p[0])); var dd = el("dd"); dd.appendChild(el("code", {}, p[1])); dl.appendChild(dd);
    });
    box.appendChild(el("p", {}, "Latest signed tree head:")); box.appendChild(dl);
    var partners = el("ul", {id: "partner-heads"});
    audit.partners.forEach(function (p) {
      var li = el("li", {"data-partner": p.partner}, p.partner + ": size " + p.head.size + ", root " +
        p.head.root.slice(0, 16) + "…, signed " + p.head.timestamp);
      // Absent on nodes whose exchange does not check consistency yet: say nothing then.
      if (p.consistent === true) li.appendChild(el("span", {"class": "consistent"}, " consistent with its earlier head"));
      else if (p.consistent === false) li.appendChild(el("span", {"class": "inconsistent"}, " INCONSISTENT with its earlier head: the partner's log was rewritten"));
      partners.appendChild(li);
    });
    box.appendChild(el("p", {}, "Partners' latest heads:"));
    if (!audit.partners.length) partners.appendChild(el("li", {"class": "empty"}, "None received yet."));
    box.appendChild(partners);
    box.appendChild(el("p", {"class": "muted"}, audit.published
      ? "Last head published to partners: size " + audit.published.size
      : "No head published to partners yet."));
  }

  // Sensor coverage: partners' footprints dashed under the node's own, solid ones.
  function drawCoverage(cov, party) {
    clear(coverageLayer);
    var key = document.getElementById("coverage-key"), note = document.getElementById("coverage-note");
    clear(key); clear(note);
    coverageLayer.classList.toggle("hidden", !showCoverage.checked);
    if (cov.error) { note.className = "error"; note.textContent = "Sensor catalogue unavailable: " + cov.error; return; }
    note.className = "muted";
    var areas = cov.areas || [], whole = [], owners = {};
    areas.slice().reverse().forEach(function (a) {
      owners[a.owner + "|" + a.relation] = a;
      var what = a.name + " (" + a.owner + " " + a.kind + ", " + a.platform + "; " +
        Math.round(a.max_range_km) + " km" + (a.sector ? ", facing " + Math.round(a.sector.boresight_deg) +
        "° ±" + Math.round(a.sector.half_width_deg) + "°" : "") + "): " + a.known_by;
      if (a.whole_map) { whole.push(a); return; }
      var d = a.outline.map(function (p, i) { return (i ? "L" : "M") + xy(p[0], p[1]).join(","); }).join("") + "Z";
      var attrs = {"class": "coverage " + a.relation, d: d, stroke: a.colour, fill: a.colour,
                   "data-owner": a.owner, "data-sensor": a.id, "data-relation": a.relation};
      coverageLayer.appendChild(svg("path", attrs, what));
      var c = xy(a.lat, a.lon);
      coverageLayer.appendChild(svg("path", {"class": "site " + a.relation, fill: a.colour,
        d: "M" + c[0] + "," + (c[1] - 5) + "l4.5,8h-9z"}, what));
      var t = svg("text", {"class": "coverage-owner", x: c[0] + 6, y: c[1] + 3, fill: a.colour,
                           "data-owner": a.owner});
      t.textContent = a.owner; coverageLayer.appendChild(t);
    });
    Object.keys(owners).sort().forEach(function (k) {
      var a = owners[k], item = el("span", {"class": "key", "data-owner": a.owner, "data-relation": a.relation});
      var sw = document.createElementNS(SVG, "svg");
      sw.setAttribute("width", "22"); sw.setAttribute("height", "12"); sw.setAttribute("aria-hidden", "true");
      sw.appendChild(svg("rect", {"class": "coverage " + a.relation, x: 1, y: 1, width: 20, height: 10,
                                  stroke: a.colour, fill: a.colour}));
      item.appendChild(sw);
      var n = areas.filter(function (b) { return b.owner === a.owner && b.relation === a.relation; }).length;
      item.appendChild(document.createTextNode(a.owner + (a.relation === "own" ? " (own)" : " (partner)") + ": " + n));
      key.appendChild(item);
    });
    var lines = [];
    if (!areas.length) lines.push("No sensor coverage you may see.");
    else lines.push("Solid: this node's sensors; dashed: partners' sensors released to " + party +
                    " (nominal range, not the horizon).");
    if (!areas.some(function (a) { return a.relation === "partner"; }))
      lines.push("No partner has released a sensor's site to " + party + ": a sensor's type and site stay with its owner.");
    whole.forEach(function (a) { lines.push(a.name + " (" + a.owner + ") sees the whole map."); });
    if (cov.withheld) lines.push(cov.withheld + " sensor(s) withheld: your clearance or need-to-know does not cover them.");
    note.textContent = lines.join(" ");
    if (!areas.length) note.className = "empty";
  }

  function render(doc) {
    showError("");
    skipped = 0;
    document.getElementById("who").textContent =
      doc.user.name + " (" + doc.user.clearance + "; " + doc.user.need_to_know.join(", ") + ")";
    var items = Array.isArray(doc.items) ? doc.items : [];
    // Each part of the page is drawn on its own: one that fails leaves the others.
    [function () { drawCoverage(doc.coverage || {areas: [], withheld: 0}, doc.party); },
     function () { drawMap(items); }, function () { drawWarnings(items); },
     function () { drawItems({items: items, withheld: doc.withheld}); },
     function () { drawAgreements(doc.agreements || []); },
     function () { drawAudit(doc.audit || {}); }].forEach(function (part) {
      try { part(); } catch (e) { skipped += 1; }
    });
    document.body.setAttribute("data-items", String(items.length));
    if (skipped) showError(skipped + " record(s) could not be drawn; the others are shown.");
  }

  function load() {
    fetch("/dashboard/state", {credentials: "same-origin"}).then(function (r) {
      if (r.status === 401) { location.href = "/login"; return null; }
      return r.json().then(function (doc) {
        if (!r.ok) throw new Error(doc.error || ("HTTP " + r.status));
        return doc;
      });
    }).then(function (doc) { if (doc) render(doc); })
      .catch(function (e) { showError("Cannot load the node's state: " + e.message); });
  }

  var live = document.getElementById("live");
  function connect() {
    var source = new EventSource("/dashboard/events");
    source.addEventListener("open", function () { live.textContent = "live"; live.className = "live on"; });
    source.addEventListener("state", function (ev) { render(JSON.parse(ev.data)); });
    source.addEventListener("failure", function (ev) {
      showError("The node reported an error: " + JSON.parse(ev.data).error); });
    source.addEventListener("signed-out", function () { source.close(); location.href = "/login"; });
    source.addEventListener("error", function () {
      live.textContent = "disconnected, retrying…"; live.className = "live off"; });
  }

  showCoverage.addEventListener("change", function () {
    coverageLayer.classList.toggle("hidden", !showCoverage.checked);
  });

  document.getElementById("replay").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var status = document.getElementById("replay-status");
    var form = new FormData(ev.target);
    var body = JSON.stringify({launch: form.get("launch"), speed: Number(form.get("speed"))});
    // The session's CSRF token, which the page carries in its sign-out form.
    var csrf = document.querySelector("#logout input[name=csrf]").value;
    status.textContent = "running the scenario…";
    fetch("/dashboard/replay", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: body})
      .then(function (r) { return r.json().then(function (d) { return [r, d]; }); })
      .then(function (p) {
        status.textContent = p[0].ok
          ? "replaying " + p[1].launch + ": " + p[1].measurements + " measurement(s) of " +
            p[1].party + "'s radars played into the node"
          : "replay refused: " + p[1].error;
      }).catch(function (e) { status.textContent = "replay failed: " + e.message; });
  });

  load();
  connect();
})();
