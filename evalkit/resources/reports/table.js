// Sortable and filterable tables without a server: click a header to sort (again to reverse),
// type in an input[data-filter] to keep matching rows. Cells sort by data-sort when present.
(function () {
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) raw = cell.textContent.trim();
    var number = parseFloat(raw);
    return raw !== "" && !isNaN(number) && isFinite(raw) ? number : raw.toLowerCase();
  }
  function compare(a, b) {
    var emptyA = a === "" || a === "-", emptyB = b === "" || b === "-";
    if (emptyA || emptyB) return emptyA === emptyB ? 0 : (emptyA ? 1 : -1);
    if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
    return typeof a === "number" ? -1 : 1;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var descending = th.getAttribute("aria-sort") === "ascending";
        table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var a = key(r1.cells[column]), b = key(r2.cells[column]);
          var order = compare(a, b);
          var emptyPair = a === "" || a === "-" || b === "" || b === "-";
          return descending && !emptyPair ? -order : order;  // empty cells stay last
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  // a checkbox adds a class to its table (the leaderboard's partial runs are hidden until it is ticked)
  document.querySelectorAll("input[data-toggle-class]").forEach(function (box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    box.addEventListener("change", function () {
      table.classList.toggle(box.getAttribute("data-toggle-class"), box.checked);
    });
  });
  // data-filter names one table id, or several separated by spaces (the leaderboard's tables per setting)
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var tables = input.getAttribute("data-filter").trim().split(/\s+/).map(function (id) {
      return document.getElementById(id);
    }).filter(Boolean);
    input.addEventListener("input", function () {
      var query = input.value.trim().toLowerCase();
      tables.forEach(function (table) {
        Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
          row.hidden = query !== "" && row.textContent.toLowerCase().indexOf(query) === -1;
        });
      });
    });
  });
})();
