// Keyboard shortcuts and image reveal for the review console. Served from this origin because
// the Content-Security-Policy forbids inline script. Any element with data-key="x" is pressed
// by the key x, unless the reviewer is typing in a field.
(function () {
  "use strict";

  var submitting = false;

  function typingIn(element) {
    if (!element) return false;
    var tag = element.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || element.isContentEditable;
  }

  function shortcutFor(key) {
    var targets = document.querySelectorAll("[data-key]");
    for (var i = 0; i < targets.length; i++) {
      if (targets[i].getAttribute("data-key") === key) return targets[i];
    }
    return null;
  }

  function press(target) {
    if (target.type === "submit" && target.form) {
      if (submitting) return; // one decision per task: a second key press must not post again
      submitting = true;
      target.form.requestSubmit(target);
    } else {
      target.click();
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typingIn(document.activeElement)) {
      if (event.key === "Escape") document.activeElement.blur();
      return;
    }
    var target = shortcutFor(event.key.toLowerCase());
    if (target) {
      event.preventDefault();
      press(target);
    }
  });

  document.addEventListener("submit", function () { submitting = true; });
  window.addEventListener("pageshow", function () { submitting = false; }); // back button

  function images() { return document.querySelectorAll(".media img"); }

  // An image at a URL has no src until revealed: only then does the console fetch it for us.
  function setRevealed(image, show) {
    image.classList.toggle("revealed", show);
    var source = image.getAttribute("data-reveal-src");
    if (show && source) {
      image.removeAttribute("data-reveal-src");
      image.classList.remove("unloaded");
      image.src = source;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    images().forEach(function (image) {
      image.addEventListener("click", function () {
        setRevealed(image, !image.classList.contains("revealed"));
      });
    });
    var reveal = document.getElementById("reveal-all");
    if (reveal) {
      reveal.addEventListener("click", function () {
        var all = images();
        var show = Array.prototype.some.call(all, function (i) { return !i.classList.contains("revealed"); });
        all.forEach(function (image) { setRevealed(image, show); });
      });
    }
    var gray = document.getElementById("grayscale");
    if (gray) {
      gray.addEventListener("click", function () {
        var on = document.body.classList.toggle("grayscale");
        gray.setAttribute("aria-pressed", on ? "true" : "false");
      });
    }
  });
})();
