/* The Keystore Monitor's row action menus (<details class="row-menu">): they open without this
   script; it only keeps one open at a time and closes it on Escape, on a click elsewhere or
   once an item is chosen, as a menu does. A file of its own: the Content-Security-Policy allows no inline script. */
"use strict";
(function () {
  function menus() {
    return document.querySelectorAll("details.row-menu[open]");
  }
  function closeAll(except) {
    menus().forEach(function (menu) {
      if (menu !== except) {
        menu.removeAttribute("open");
      }
    });
  }
  document.addEventListener("toggle", function (event) {
    var menu = event.target;
    if (menu.matches && menu.matches("details.row-menu") && menu.open) {
      closeAll(menu);
    }
  }, true);
  document.addEventListener("click", function (event) {
    // A chosen item closes its menu too: a download leaves the page where it is.
    if (!event.target.closest("details.row-menu") || event.target.closest(".row-menu-items a")) {
      closeAll(null);
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      var open = menus();
      open.forEach(function (menu) {
        menu.removeAttribute("open");
        var summary = menu.querySelector("summary");
        if (summary) {
          summary.focus();
        }
      });
    }
  });
})();
