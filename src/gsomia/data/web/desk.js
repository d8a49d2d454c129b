// gsomia operator desk: draws /desk/state by role and posts each action as JSON with the
// session's CSRF token. Text is always set with textContent: item content is data.
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  var csrf = desk.getAttribute("data-csrf");
  var state = null;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function section(id) { return document.getElementById(id); }
  function say(id, text, failed) {
    var box = section(id).querySelector(".status");
    box.textContent = text || "";
    box.className = failed ? "status error" : "status";
  }
  function showError(text) {
    var box = document.getElementById("error");
    box.hidden = !text; box.textContent = text || "";
  }
  function options(select, values, chosen) {
    clear(select);
    values.forEach(function (v) {
      var o = el("option", {value: v}, v === "" ? "(none)" : v);
      if (v === chosen) o.selected = true;
      select.appendChild(o);
    });
  }

  // One POST of the desk; resolves with [status, body].
  function post(action, body) {
    return fetch("/desk/" + action, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body)})
      .then(function (r) {
        return r.json().catch(function () { return {error: "HTTP " + r.status}; })
          .then(function (doc) { return [r.status, doc]; });
      });
  }
  function act(id, action, body, done) {
    say(id, "…");
    return post(action, body).then(function (res) {
      if (res[0] >= 400) { say(id, res[1].error || ("HTTP " + res[0]), true); return; }
      say(id, done(res[1]));
      load();
    }, function (e) { say(id, "the node did not answer: " + e, true); });
  }

  function drawConsents(rows) {
    var body = section("consents").querySelector("tbody");
    clear(body);
    var mine = rows.filter(function (r) { return r.direction === "incoming"; });
    if (!mine.length) {
      body.appendChild(el("tr", {}, "")).appendChild(
        el("td", {colspan: "8", "class": "empty"}, "No consent request."));
      return;
    }
    mine.forEach(function (r) {
      var tr = el("tr", {"data-request": r.id, "data-status": r.status});
      tr.appendChild(el("td", {}, r.id));
      tr.appendChild(el("td", {"class": "item"}, r.item_id + (r.summary ? " — " + r.summary : "")));
      tr.appendChild(el("td", {"class": "marking"}, r.marking));
      tr.appendChild(el("td", {"class": "requester"}, r.requester));
      tr.appendChild(el("td", {"class": "recipient"}, r.recipient));
      tr.appendChild(el("td", {}, r.reason));
      tr.appendChild(el("td", {"class": "state"}, r.status));
      var cell = el("td", {"class": "answer"});
      if (r.status === "pending") {
        var why = el("input", {name: "reason", placeholder: "reason", size: "20"});
        var grant = el("button", {type: "button", "class": "grant"}, "Grant");
        var deny = el("button", {type: "button", "class": "deny"}, "Deny");
        grant.addEventListener("click", function () {
          act("consents", "grant", {request: r.id, reason: why.value},
              function (d) { return d.request + " granted: " + d.item_id + " may go to " + d.recipient; });
        });
        deny.addEventListener("click", function () {
          act("consents", "deny", {request: r.id, reason: why.value},
              function (d) { return d.request + " denied"; });
        });
        cell.appendChild(why); cell.appendChild(grant); cell.appendChild(deny);
      }
      tr.appendChild(cell);
      body.appendChild(tr);
    });
  }

  function drawStanding(doc, party) {
    var form = document.getElementById("standing-form");
    if (!form.to.options.length) {
      options(form.to, doc.parties, doc.parties[0]);
      options(form.purpose, doc.purposes, "dprk-missile");
      checks(form.querySelector(".categories"), "categories", doc.categories, []);
    }
    var body = section("standing").querySelector("tbody");
    clear(body);
    if (!doc.consents.length) {
      body.appendChild(el("tr", {}, "")).appendChild(
        el("td", {colspan: "8", "class": "empty"}, "No standing consent."));
      return;
    }
    doc.consents.forEach(function (c) {
      var tr = el("tr", {"data-standing": c.id, "data-state": c.state,
                         "data-direction": c.direction});
      [c.id, c.direction, c.originator + " → " + c.recipient, c.categories.join(", "),
       c.purpose, c.not_before + " .. " + c.not_after]
        .forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      tr.appendChild(el("td", {"class": "state"}, c.state));
      var cell = el("td");
      if (c.direction === "given" && c.originator === party && c.state !== "revoked") {
        var revoke = el("button", {type: "button", "class": "revoke-standing"}, "Revoke");
        revoke.addEventListener("click", function () {
          act("standing", "standing-revoke", {id: c.id},
              function (d) { return d.consent_id + " revoked; partners told: " +
                                    (d.sent_to.join(", ") || "nobody"); });
        });
        cell.appendChild(revoke);
      }
      tr.appendChild(cell);
      body.appendChild(tr);
    });
  }

  function drawIncidents(rows, items) {
    var select = section("incidents").querySelector("select[name=item_id]");
    var chosen = select.value;
    clear(select);
    items.forEach(function (i) {
      var o = el("option", {value: i.id}, i.id + " — " + i.summary + " (" + i.marking + ")");
      if (i.id === chosen) o.selected = true;
      select.appendChild(o);
    });
    var body = section("incidents").querySelector("tbody");
    clear(body);
    rows.forEach(function (r) {
      var tr = el("tr", {"data-reference": r.reference, "data-direction": r.direction});
      [r.reference, r.direction, r.kind, r.item_id, r.reported_by, r.description,
       r.sent.map(function (s) { return s.to + " " + s.status; }).join("; ")]
        .forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      body.appendChild(tr);
    });
  }

  function drawReclassify(items, levels) {
    var body = section("reclassify").querySelector("tbody");
    clear(body);
    items.forEach(function (i) {
      var tr = el("tr", {"data-id": i.id});
      tr.appendChild(el("td", {}, i.id));
      tr.appendChild(el("td", {}, i.summary));
      tr.appendChild(el("td", {"class": "marking"}, i.marking));
      var cell = el("td");
      if (i.reclassifiable) {
        var level = el("select", {name: "level"});
        options(level, levels);
        var go = el("button", {type: "button", "class": "reclassify"}, "Reclassify");
        go.addEventListener("click", function () {
          act("reclassify", "reclassify", {item_id: i.id, level: level.value},
              function (d) { return d.item_id + ": " + d.old_level + " → " + d.new_level; });
        });
        cell.appendChild(level); cell.appendChild(go);
      } else {
        cell.appendChild(el("span", {"class": "muted"}, "originated at " + i.originator));
      }
      tr.appendChild(cell);
      body.appendChild(tr);
    });
  }

  function labelOf(form) {
    var pick = function (cls) {
      return Array.prototype.map.call(
        form.querySelectorAll("." + cls + " input:checked"), function (c) { return c.value; });
    };
    return {level: form.level.value, rel_to: pick("rel-to"), purpose: form.purpose.value,
            caveats: pick("caveats"), category: form.category.value, policy: form.policy.value};
  }
  function checks(span, name, values, checked) {
    if (span.querySelector("input")) return;
    values.forEach(function (v) {
      var l = el("label", {"class": "check"});
      var c = el("input", {type: "checkbox", name: name, value: v});
      c.checked = checked.indexOf(v) >= 0;
      l.appendChild(c); l.appendChild(document.createTextNode(" " + v));
      span.appendChild(l);
    });
  }
  function drawPicker(p, party) {
    var form = document.getElementById("publish-form");
    if (form.level.options.length) return;  // drawn once; the user's choices stay
    options(form.level, p.levels, p.levels[1]);
    options(form.purpose, p.purposes, "dprk-missile");
    options(form.category, [""].concat(p.categories), "");
    options(form.policy, [""].concat(p.policies), "");
    checks(form.querySelector(".rel-to"), "rel_to", p.parties, [party]);
    checks(form.querySelector(".caveats"), "caveats", p.caveats, []);
    refreshPreview();
  }
  var previewing = 0;
  function refreshPreview() {
    var form = document.getElementById("publish-form");
    var box = document.getElementById("preview");
    var mine = ++previewing;
    post("preview", {label: labelOf(form)}).then(function (res) {
      if (mine !== previewing) return;
      clear(box);
      if (res[0] >= 400) { box.appendChild(el("p", {"class": "error"}, res[1].error)); return; }
      var d = res[1];
      box.appendChild(el("p", {"class": "marking"}, d.marking + " (" + d.english + ")"));
      var list = el("ul", {"class": "receivers"});
      d.partners.forEach(function (p) {
        var li = el("li", {"data-partner": p.partner, "data-permit": String(p.permit)},
                    p.partner + ": " + (p.permit ? "could receive it under " + p.agreement +
                    " as " + p.recipient_level : "would not receive it (" + p.reasons.join("; ") + ")"));
        list.appendChild(li);
      });
      box.appendChild(list);
      if (!d.you_may_read) {
        box.appendChild(el("p", {"class": "error"}, "You could not read it: " + d.your_reasons.join("; ")));
      }
    });
  }

  function drawUsers(users, roles, levels) {
    var form = document.getElementById("user-form");
    if (!form.role.options.length) { options(form.role, roles, "reader"); options(form.clearance, levels, levels[levels.length - 1]); }
    var body = section("users").querySelector("tbody");
    clear(body);
    users.forEach(function (u) {
      var tr = el("tr", {"data-user": u.name, "data-state": u.state});
      [u.name, u.role, u.clearance, u.need_to_know.join(", "), u.state]
        .forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      var cell = el("td");
      if (u.state === "active") {
        var revoke = el("button", {type: "button", "class": "revoke"}, "Revoke");
        revoke.addEventListener("click", function () {
          act("users", "revoke-user", {name: u.name}, function (d) { return d.name + ": token revoked"; });
        });
        cell.appendChild(revoke);
      }
      tr.appendChild(cell);
      body.appendChild(tr);
    });
  }

  function draw(doc) {
    state = doc;
    document.getElementById("who").textContent =
      doc.user.name + " (" + doc.user.role + ", " + doc.user.clearance + ")";
    var a = doc.allowed;
    var note = document.getElementById("role-note");
    note.hidden = a["consent-inbox"];
    note.textContent = "Your role (" + doc.user.role + ") lets you read the dashboard only; " +
      "the desk's actions need the operator role (users: admin).";
    section("consents").hidden = !a["consent-inbox"];
    section("standing").hidden = !a["consent-inbox"];
    section("incidents").hidden = !a["incident-list"];
    section("reclassify").hidden = !a["reclassify"];
    section("publish").hidden = !a["publish"];
    section("users").hidden = !a["user-list"];
    if (doc.consents) drawConsents(doc.consents);
    if (doc.standing) drawStanding(doc.standing, doc.party);
    if (doc.incidents) drawIncidents(doc.incidents, doc.items);
    if (doc.items && doc.picker) drawReclassify(doc.items, doc.picker.levels);
    if (doc.picker) drawPicker(doc.picker, doc.party);
    if (doc.users) drawUsers(doc.users, doc.roles, doc.picker ? doc.picker.levels : []);
    desk.setAttribute("data-ready", "true");
  }

  function load() {
    return fetch("/desk/state", {credentials: "same-origin"}).then(function (r) {
      if (r.status === 401) { window.location = "/login"; return null; }
      return r.json().then(function (doc) {
        if (r.status >= 400) { showError(doc.error || ("HTTP " + r.status)); return; }
        showError(""); draw(doc);
      });
    }, function (e) { showError("the node did not answer: " + e); });
  }

  document.getElementById("incident-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    act("incidents", "incident", {item_id: f.item_id.value, kind: f.kind.value,
                                  description: f.description.value},
        function (d) { return d.reference + " recorded; notice to " + (d.queued_to.join(", ") || "nobody"); });
  });
  document.getElementById("standing-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    var categories = Array.prototype.map.call(
      f.querySelectorAll(".categories input:checked"), function (c) { return c.value; });
    act("standing", "standing-grant", {to: f.to.value, categories: categories,
                                       purpose: f.purpose.value, until: f.until.value},
        function (d) { return d.id + " granted: " + d.categories.join(", ") + " → " +
                              d.recipient + "; sent to " + (d.sent_to.join(", ") || "nobody"); });
  });
  var publishForm = document.getElementById("publish-form");
  publishForm.addEventListener("change", function (ev) {
    if (ev.target.name !== "object") refreshPreview();
  });
  publishForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var obj;
    try { obj = JSON.parse(publishForm.object.value); } catch (e) {
      say("publish", "the object is not JSON: " + e.message, true); return;
    }
    act("publish", "publish", {object: obj, label: labelOf(publishForm)},
        function (d) { return d.id + " published as " + d.national_marking; });
  });
  document.getElementById("user-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    say("users", "…");
    post("add-user", {name: f.name.value, clearance: f.clearance.value, role: f.role.value,
                      need_to_know: f.need_to_know.value.split(",").map(function (s) { return s.trim(); })
                        .filter(function (s) { return s; })})
      .then(function (res) {
        var shown = document.getElementById("new-token");
        if (res[0] >= 400) { shown.hidden = true; say("users", res[1].error, true); return; }
        say("users", res[1].name + " added as " + res[1].role);
        shown.querySelector(".name").textContent = res[1].name;
        shown.querySelector(".token").textContent = res[1].token;
        shown.hidden = false;
        f.name.value = "";
        load();
      });
  });
  load();
})();
