// TenantAtlas front-end behaviour. Loaded as a file (no inline script), so a strict CSP holds.
document.addEventListener("DOMContentLoaded", function () {
  // Auto-dismiss success and info messages after a few seconds; errors stay.
  document.querySelectorAll(".alert-success, .alert-info").forEach(function (alert) {
    setTimeout(function () {
      if (window.bootstrap) { window.bootstrap.Alert.getOrCreateInstance(alert).close(); }
    }, 6000);
  });
});
