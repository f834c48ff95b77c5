(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("atex-data").textContent);
  var S = data.statuses, P = data.platforms;
  var tbody = document.querySelector("#tests tbody");
  var q = document.getElementById("q"), fs = document.getElementById("f-status"),
      fp = document.getElementById("f-platform"), fsub = document.getElementById("f-subtests"),
      frr = document.getElementById("f-reruns"), shown = document.getElementById("shown");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function badge(status) {
    return el("span", "st st-" + (status === null ? "none" : (S.indexOf(status) >= 0 ? status : "error")),
              status === null ? "none" : status);
  }
  function dur(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    var m = Math.floor(s / 60), r = Math.round(s - m * 60);
    if (m < 60) return m + " min " + r + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function files(td, list) {
    for (var i = 0; i < list.length; i++) {
      var f = list[i];
      if (f[1] === null) { td.appendChild(el("span", null, f[0])); td.appendChild(document.createTextNode(" ")); continue; }
      var a = el("a", null, f[0]);
      a.href = f[1];
      td.appendChild(a);
    }
  }

  // One entry per test: its row, its subtest rows and its sort keys.
  var entries = [];
  var frag = document.createDocumentFragment();
  data.tests.forEach(function (t, idx) {
    // [platform, name, status, duration, note, files, subtests, earlier attempts]
    var e = {idx: idx, p: t[0], name: t[1], s: t[2], d: t[3], note: t[4] || "", n: t[7].length + 1, subs: []};
    var tr = el("tr", "test" + (t[7].length ? " rerun" : ""));
    tr.dataset.status = S[t[2]];
    tr.dataset.platform = P[t[0]];
    tr.appendChild(el("td", null, P[t[0]]));
    tr.appendChild(el("td", "name", t[1]));
    var st = el("td"); st.appendChild(badge(S[t[2]])); tr.appendChild(st);
    var at = el("td", "attempts num");
    if (t[7].length) {
      t[7].forEach(function (a, i) {
        var b = badge(S[a[0]]);
        b.title = "attempt " + (i + 1) + ": " + S[a[0]] + (a[1] !== null ? ", " + dur(a[1]) : "") + (a[2] ? " \u2014 " + a[2] : "");
        at.appendChild(b);
      });
      at.appendChild(el("span", "arrow", "\u2192"));
    }
    at.appendChild(document.createTextNode(String(e.n)));
    tr.appendChild(at);
    tr.appendChild(el("td", "num", dur(t[3])));
    tr.appendChild(el("td", "note", t[4]));
    var ft = el("td", "files"); files(ft, t[5]); tr.appendChild(ft);
    e.row = tr;
    frag.appendChild(tr);
    t[6].forEach(function (s) {
      // [name, status, note, files, duration]
      var sr = el("tr", "sub");
      sr.dataset.status = s[1] === null ? "" : s[1];
      sr.appendChild(el("td"));
      sr.appendChild(el("td", "name", s[0]));
      var ss = el("td"); ss.appendChild(badge(s[1])); sr.appendChild(ss);
      sr.appendChild(el("td"));
      sr.appendChild(el("td", "num", dur(s[4])));
      sr.appendChild(el("td", "note", s[2]));
      var sf = el("td", "files"); files(sf, s[3]); sr.appendChild(sf);
      e.subs.push({row: sr, name: s[0], s: s[1], note: s[2] || ""});
      frag.appendChild(sr);
    });
    entries.push(e);
  });
  tbody.appendChild(frag);

  function apply() {
    var text = q.value.trim().toLowerCase(), status = fs.value, plat = fp.value,
        subs = fsub.checked, reruns = frr.checked, nt = 0, ns = 0;
    entries.forEach(function (e) {
      var pOk = plat === "" || P[e.p] === plat;
      var rOk = !reruns || e.n > 1;
      var tOk = pOk && rOk && (status === "" || S[e.s] === status) &&
        (text === "" || e.name.toLowerCase().indexOf(text) >= 0 || e.note.toLowerCase().indexOf(text) >= 0);
      e.row.hidden = !tOk;
      if (tOk) nt++;
      e.subs.forEach(function (s) {
        var sOk = subs && pOk && rOk && (status === "" || s.s === status) &&
          (text === "" || s.name.toLowerCase().indexOf(text) >= 0 || s.note.toLowerCase().indexOf(text) >= 0 ||
           e.name.toLowerCase().indexOf(text) >= 0);
        s.row.hidden = !sOk;
        if (sOk) ns++;
      });
    });
    shown.dataset.tests = nt;
    shown.dataset.subtests = ns;
    shown.textContent = "showing " + nt + " of " + entries.length + " tests, " + ns + " subtests";
  }

  var sortKey = null, sortDir = 1;
  var keys = {
    platform: function (e) { return P[e.p]; }, name: function (e) { return e.name; },
    status: function (e) { return e.s; }, attempts: function (e) { return e.n; },
    duration: function (e) { return e.d === null ? -1 : e.d; }
  };
  function sortBy(key) {
    sortDir = sortKey === key ? -sortDir : 1;
    sortKey = key;
    var k = keys[key];
    entries.sort(function (a, b) {
      var x = k(a), y = k(b);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return c * sortDir || a.idx - b.idx;
    });
    var f = document.createDocumentFragment();
    entries.forEach(function (e) { f.appendChild(e.row); e.subs.forEach(function (s) { f.appendChild(s.row); }); });
    tbody.appendChild(f);
    document.querySelectorAll("#tests thead th[data-key]").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key === key ? (sortDir > 0 ? "ascending" : "descending") : "none");
    });
  }
  document.querySelectorAll("#tests thead th[data-key]").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th.dataset.key); });
  });
  [q, fs, fp, fsub, frr].forEach(function (c) { c.addEventListener("input", apply); c.addEventListener("change", apply); });
  var params = new URLSearchParams(location.hash.slice(1));
  if (params.get("status")) fs.value = params.get("status");
  if (params.get("q")) q.value = params.get("q");
  apply();
  document.body.dataset.ready = "1";
})();
