// The page's own behaviour, loaded once into <head> by demo.app (the painter's is demo/painter.js):
//   * a number typed beyond a slider's bounds is said beside the slider (gradio puts it back within them
//     silently when the box loses focus);
//   * Esc stops the running job of the tab in view (its Stop button);
//   * small results are scaled by a whole factor that fits their box, so that their pixels stay square.
(() => {
  if (window.glidePage) return;   // the script is in the head once, but a hot reload may run it again
  window.glidePage = true;

  // -------------------------------------------------------------------------------------- out-of-range numbers
  const SLIDER_BOX = 'input[type="number"][aria-label^="number input for "]';
  const plain = (x) => String(Number(x));

  function sayRange(input) {
    const block = input.closest(".block");
    if (!block) return;
    let note = block.querySelector(":scope > .range-note");
    const value = Number(input.value), lo = Number(input.min), hi = Number(input.max);
    const outside = input.value !== "" && Number.isFinite(value) && (value < lo || value > hi);
    if (!outside) {
      if (note) note.remove();
      return;
    }
    if (!note) {
      note = document.createElement("p");
      note.className = "range-note";
      note.setAttribute("role", "status");
      block.appendChild(note);
    }
    const name = input.getAttribute("aria-label").slice("number input for ".length);
    const bound = value > hi ? hi : lo;
    note.textContent = `${name} takes ${plain(lo)} to ${plain(hi)}: ${plain(value)} was set to ${plain(bound)}.`;
  }

  // Capture: runs before gradio's own blur handler, which puts the value back within the bounds.
  document.addEventListener("blur", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.matches(SLIDER_BOX)) sayRange(e.target);
  }, true);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target instanceof HTMLInputElement && e.target.matches(SLIDER_BOX)) e.target.blur();
  }, true);
  document.addEventListener("input", (e) => {   // a new value (typed, or the range dragged) clears the note
    const block = e.target instanceof Element && e.target.closest(".block");
    const note = block && block.querySelector(":scope > .range-note");
    if (note && !(e.target.matches(SLIDER_BOX) && e.target === document.activeElement)) note.remove();
  }, true);

  // -------------------------------------------------------------------------------------- Esc stops
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    // The Stop button of the tab in view (hidden tabs' buttons have no layout box).
    const stop = [...document.querySelectorAll("button.stop-job")].find((b) => b.offsetParent !== null);
    if (stop) stop.click();
  });

  // -------------------------------------------------------------------------------------- whole-factor scaling
  // The large views only: a gallery's thumbnails keep gradio's own sizes (demo.app's CSS keeps them small).
  const LARGE = "#preview img, #gallery img, #upscale-result img, #upscale-input img";

  function fitWhole(img) {
    const box = img.parentElement;
    if (!box || !img.naturalWidth || img.closest(".thumbnail-item")) return;
    const room = Math.min(box.clientWidth / img.naturalWidth,
                          (box.clientHeight || Infinity) / img.naturalHeight);
    if (!Number.isFinite(room) || room <= 0) return;
    const factor = room >= 1 ? Math.floor(room) : room;   // larger than its box: shrink to fit
    img.style.width = `${Math.round(img.naturalWidth * factor)}px`;
    img.style.height = `${Math.round(img.naturalHeight * factor)}px`;
    img.style.maxWidth = img.style.maxHeight = "100%";    // a box that shrinks later (a phone turned) never overflows
    img.style.objectFit = "contain";
    img.style.margin = "auto";
  }

  document.addEventListener("load", (e) => {
    if (e.target instanceof HTMLImageElement && e.target.matches(LARGE)) fitWhole(e.target);
  }, true);
  window.addEventListener("resize", () => document.querySelectorAll(LARGE).forEach(fitWhole));
})();
