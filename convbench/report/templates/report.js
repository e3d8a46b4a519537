// convbench report: sortable tables and a filter for the results table. Inline, no network.
(function () {
  "use strict";

  function sortKey(cell) {
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "") {
      var n = Number(v);
      if (!isNaN(n)) return { num: true, v: n };
    }
    return { num: false, v: cell.textContent.trim().toLowerCase() };
  }

  function compare(a, b) {
    if (a.num && b.num) return a.v - b.v;
    if (a.num !== b.num) return a.num ? -1 : 1; // numbers before text, blanks last
    if (a.v === b.v) return 0;
    if (a.v === "" || a.v === "—") return 1;
    if (b.v === "" || b.v === "—") return -1;
    return a.v < b.v ? -1 : 1;
  }

  function makeSortable(table) {
    var body = table.tBodies[0];
    var heads = Array.prototype.slice.call(table.tHead.rows[table.tHead.rows.length - 1].cells);
    heads.forEach(function (th, index) {
      th.setAttribute("tabindex", "0");
      th.title = "sort by " + th.textContent.trim();
      function sort() {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(sortKey(r1.cells[index]), sortKey(r2.cells[index]));
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        table.setAttribute("data-sorted-by", index + (ascending ? ":asc" : ":desc"));
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
    table.setAttribute("data-sortable", "ready");
  }

  // absent: the checkbox that shows the rows unsupported for want of their device (folded away
  // by the stylesheet until it is ticked), or null where there are none.
  function makeFilter(table, input, select, counter, absent) {
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    function apply() {
      var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var status = select ? select.value : "";
      var showAbsent = absent ? absent.checked : true;
      table.classList.toggle("show-absent", showAbsent);
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.textContent.toLowerCase();
        var ok = terms.every(function (t) { return text.indexOf(t) >= 0; }) &&
          (!status || row.getAttribute("data-status") === status) &&
          (showAbsent || !row.classList.contains("absent"));
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      counter.textContent = shown + " of " + rows.length + " results";
      table.setAttribute("data-shown", String(shown));
    }
    input.addEventListener("input", apply);
    if (select) select.addEventListener("change", apply);
    if (absent) absent.addEventListener("change", apply);
    apply();
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  var results = document.getElementById("results-table");
  var details = document.getElementById("results-details");
  if (results && details) {
    details.addEventListener("change", function () {
      results.classList.toggle("show-details", details.checked);
    });
  }
  if (results) {
    makeFilter(results, document.getElementById("results-filter"),
      document.getElementById("results-status"), document.getElementById("results-count"),
      document.getElementById("results-absent"));
  }
  document.documentElement.setAttribute("data-report-script", "ran");
})();
