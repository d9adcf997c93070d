// TenantAtlas front-end behaviour. Loaded as a file (no inline script), so a strict CSP holds.
(function () {
  "use strict";
  var PLACEHOLDER = "00000000-0000-0000-0000-000000000000";

  function setupTenantSwitcher() {
    var modalElement = document.getElementById("tenant-switcher");
    if (!modalElement || !window.bootstrap) { return; }
    var modal = window.bootstrap.Modal.getOrCreateInstance(modalElement);
    var input = document.getElementById("tenant-switcher-search");
    var results = document.getElementById("tenant-switcher-results");
    var marks = document.getElementById("tenant-switcher-marks");
    var searchUrl = modalElement.dataset.searchUrl;
    var template = modalElement.dataset.switchTemplate;
    var timer = null;
    var latest = 0;
    var shownTerm = "";      // the term whose results are on screen ("" = the pinned and recent lists)
    var openWhenShown = false;  // Enter was pressed before the results of what was typed arrived
    var active = 0;          // the highlighted entry of the visible list

    function entry(tenant, index) {
      var link = document.createElement("a");
      link.className = "list-group-item list-group-item-action switcher-entry switcher-result";
      link.id = "tenant-switcher-result-" + index;
      link.setAttribute("role", "option");
      link.href = template.replace(PLACEHOLDER, encodeURIComponent(tenant.external_id));
      var name = document.createElement("span");
      name.textContent = tenant.name;
      link.appendChild(name);
      if (tenant.domain) {
        var domain = document.createElement("span");
        domain.className = "small text-body-secondary ms-2";
        domain.textContent = tenant.domain;
        link.appendChild(domain);
      }
      return link;
    }

    function entries() {
      // What Enter and the arrow keys act on: the search results once shown, else the marks.
      return Array.prototype.slice.call((marks.hidden ? results : marks).querySelectorAll(".switcher-entry"));
    }

    function highlight(index) {
      var list = entries();
      list.forEach(function (link, i) {
        if (!link.id) { link.id = "tenant-switcher-entry-" + i; }
        link.classList.toggle("active", i === index);
        link.setAttribute("aria-selected", i === index ? "true" : "false");
      });
      active = list.length ? Math.max(0, Math.min(index, list.length - 1)) : 0;
      if (list.length) {
        input.setAttribute("aria-activedescendant", list[active].id);
        list[active].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function openHighlighted() {
      var list = entries();
      if (list.length) { window.location.href = list[active].href; }
    }

    function showMarks() {
      results.replaceChildren();
      marks.hidden = false;
      shownTerm = "";
      highlight(0);
    }

    function search() {
      clearTimeout(timer);
      var term = input.value.trim();
      if (!term) { showMarks(); return; }
      var request = ++latest;
      fetch(searchUrl + "?q=" + encodeURIComponent(term), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
        .then(function (data) {
          if (request !== latest) { return; }  // a newer search has been sent
          marks.hidden = true;
          shownTerm = term;
          if (!data.results.length) {
            var none = document.createElement("div");
            none.className = "small text-body-secondary";
            none.textContent = "No active tenant matches.";
            results.replaceChildren(none);
            openWhenShown = false;
            return;
          }
          results.replaceChildren.apply(results, data.results.map(entry));
          highlight(0);
          if (openWhenShown) { openWhenShown = false; openHighlighted(); }
        })
        .catch(function () {
          if (request !== latest) { return; }
          openWhenShown = false;
          var failed = document.createElement("div");
          failed.className = "small text-danger";
          failed.textContent = "Search failed. Try again.";
          results.replaceChildren(failed);
        });
    }

    input.setAttribute("aria-controls", "tenant-switcher-results");
    results.setAttribute("role", "listbox");
    input.addEventListener("input", function () { openWhenShown = false; clearTimeout(timer); timer = setTimeout(search, 150); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        var count = entries().length;
        if (count) { highlight((active + (event.key === "ArrowDown" ? 1 : count - 1)) % count); }
      } else if (event.key === "Enter") {
        event.preventDefault();
        if (input.value.trim() === shownTerm) {
          openHighlighted();
        } else {
          // The results on screen are not those of what was typed: wait for them, then open the first.
          openWhenShown = true;
          search();
        }
      }
    });
    modalElement.addEventListener("show.bs.modal", function () { highlight(0); });
    modalElement.addEventListener("shown.bs.modal", function () { input.focus(); input.select(); });
    document.addEventListener("keydown", function (event) {
      var typing = /^(INPUT|TEXTAREA|SELECT)$/.test((event.target.tagName || "")) || event.target.isContentEditable;
      if ((event.key === "k" || event.key === "K") && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        modal.show();
      } else if (event.key === "/" && !typing) {
        event.preventDefault();
        modal.show();
      }
    });
  }

  function setupDiffPickers() {
    // Policy versions: the compare button needs exactly two checked versions.
    var form = document.getElementById("version-compare");
    if (!form) { return; }
    var button = form.querySelector("button[type=submit]");
    function update() {
      var checked = form.querySelectorAll("input[name=pick]:checked");
      button.disabled = checked.length !== 2;
      if (checked.length === 2) {
        form.querySelector("input[name=a]").value = checked[0].value;
        form.querySelector("input[name=b]").value = checked[1].value;
      }
    }
    form.addEventListener("change", update);
    update();
  }

  function setupRestorePicker() {
    // The restore wizard's item list: filter by name and family, select the rows shown, count the selection.
    var picker = document.querySelector("[data-restore-picker]");
    if (!picker) { return; }
    var form = picker.closest("form") || document;
    var search = picker.querySelector("[data-picker-search]");
    var family = picker.querySelector("[data-picker-family]");
    var count = picker.querySelector("[data-picker-count]");
    var empty = form.querySelector("[data-picker-empty]");
    var rows = Array.prototype.slice.call(form.querySelectorAll("tr[data-family]"));
    function box(row) { return row.querySelector("input[type=checkbox][name=item]"); }
    function shown(row) { return !row.hidden; }

    function update() {
      var selected = rows.filter(function (row) { return box(row).checked; });
      var hiddenSelected = selected.filter(function (row) { return !shown(row); }).length;
      var visible = rows.filter(shown).length;
      var text = selected.length + " of " + rows.length + " selected";
      if (visible !== rows.length) { text += " · " + visible + " shown"; }
      if (hiddenSelected) { text += " (" + hiddenSelected + " selected not shown)"; }
      if (count) { count.textContent = text; }
    }

    function filter() {
      var term = search ? search.value.trim().toLowerCase() : "";
      var wanted = family ? family.value : "";
      rows.forEach(function (row) {
        var matches = (!wanted || row.dataset.family === wanted) &&
          (!term || (row.dataset.name || "").indexOf(term) !== -1);
        row.hidden = !matches;
      });
      if (empty) { empty.hidden = !rows.length || rows.some(shown); }
      update();
    }

    if (search) {
      search.addEventListener("input", filter);
      // Enter in the filter box filters; it must not submit the wizard (that would plan a restore).
      search.addEventListener("keydown", function (event) {
        if (event.key === "Enter") { event.preventDefault(); filter(); }
      });
    }
    if (family) { family.addEventListener("change", filter); }
    var all = picker.querySelector("[data-picker-all]");
    var none = picker.querySelector("[data-picker-none]");
    if (all) {
      all.addEventListener("click", function () {
        rows.filter(shown).forEach(function (row) { box(row).checked = true; });
        update();
      });
    }
    if (none) {
      none.addEventListener("click", function () {
        rows.forEach(function (row) { box(row).checked = false; });
        update();
      });
    }
    form.addEventListener("change", function (event) {
      if (event.target && event.target.name === "item") { update(); }
    });
    filter();
  }

  function autoDismissAlerts() {
    document.querySelectorAll(".alert-success, .alert-info").forEach(function (alert) {
      setTimeout(function () {
        if (window.bootstrap) { window.bootstrap.Alert.getOrCreateInstance(alert).close(); }
      }, 6000);
    });
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  // A sync in progress: reload the page every few seconds until it has finished.
  function refreshWhileRunning() {
    var marker = document.querySelector("[data-refresh-seconds]");
    if (!marker) { return; }
    var seconds = Math.max(parseInt(marker.dataset.refreshSeconds, 10) || 3, 1);
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }

  function setupCopyLinks() {
    // "Copy link": the workspace-qualified permalink, as an absolute URL, to the clipboard.
    document.querySelectorAll("[data-copy-link]").forEach(function (link) {
      var label = link.querySelector(".copy-link-label");
      function done(text) {
        if (!label) { return; }
        label.textContent = text;
        setTimeout(function () { label.textContent = "Copy link"; }, 2000);
      }
      function fallback(url) {
        var field = document.createElement("textarea");
        field.value = url;
        field.setAttribute("readonly", "");
        field.className = "visually-hidden";
        document.body.appendChild(field);
        field.select();
        var copied = false;
        try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
        field.remove();
        done(copied ? "Link copied" : "Copy failed: right-click to copy");
      }
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var url = link.href;  // absolute
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(url).then(function () { done("Link copied"); }, function () { fallback(url); });
        } else {
          fallback(url);
        }
      });
    });
  }

  function applyFiltersOnChange() {
    // List filters (severity, status, type, rows per page) apply as soon as one changes.
    document.querySelectorAll("form.list-toolbar select").forEach(function (select) {
      select.addEventListener("change", function () {
        var form = select.form;
        var page = form.querySelector("input[name=page]");
        if (page) { page.value = "1"; }
        if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
      });
    });
  }

  function markScrollingTables() {
    // A table wider than the screen scrolls sideways inside its card: say so, and fade the hidden side.
    document.querySelectorAll(".table-card").forEach(function (card) {
      var frame = document.createElement("div");
      frame.className = "table-scroll-frame";
      card.parentNode.insertBefore(frame, card);
      frame.appendChild(card);
      var hint = document.createElement("div");
      hint.className = "table-scroll-hint small text-body-secondary";
      var icon = document.createElement("i");
      icon.className = "bi bi-arrow-left-right";
      icon.setAttribute("aria-hidden", "true");
      hint.appendChild(icon);
      hint.appendChild(document.createTextNode(" Wider than the screen: swipe the table sideways for more columns."));
      frame.parentNode.insertBefore(hint, frame);
      function update() {
        var scrollable = card.scrollWidth > card.clientWidth + 1;
        frame.classList.toggle("is-scrollable", scrollable);
        frame.classList.toggle("at-end", card.scrollLeft + card.clientWidth >= card.scrollWidth - 1);
        hint.classList.toggle("shown", scrollable);
      }
      card.addEventListener("scroll", update, { passive: true });
      window.addEventListener("resize", update);
      update();
    });
  }

  // Baseline from a backup: a ticked policy means "only the ticked ones", so the scope radio
  // follows the boxes (the server refuses "every policy" with boxes ticked, should this not run).
  function setupScopeFollowsTicks() {
    var boxes = Array.prototype.slice.call(document.querySelectorAll("input[data-picks-scope]"));
    if (!boxes.length) { return; }
    var form = boxes[0].form;
    function pick(value) {
      var radio = form.querySelector("input[data-scope-option='" + value + "']");
      if (radio) { radio.checked = true; }
    }
    boxes.forEach(function (box) {
      box.addEventListener("change", function () {
        pick(boxes.some(function (b) { return b.checked; }) ? "chosen" : "all");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupScopeFollowsTicks();
    refreshWhileRunning();
    markScrollingTables();
    applyFiltersOnChange();
    setupCopyLinks();
    setupTenantSwitcher();
    setupDiffPickers();
    setupRestorePicker();
    autoDismissAlerts();
    confirmForms();
    // Behaviour is attached: browser tests wait for this before using it.
    document.documentElement.dataset.scriptsReady = "1";
  });
})();
