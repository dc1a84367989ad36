// The mask painter's behaviour: the body of gr.HTML's js_on_load (demo/painter.py). gradio runs it once per
// mounted component with `element` (the component's root), `props` (props.value is the component's value,
// sent to the server with every event that takes it as an input) and `watch` (runs when the server sets a
// prop).
//
// The mask is kept here at the image's own resolution, one byte a pixel, and drawn in whole pixels (no
// anti-aliasing), so what is shown is exactly what is sent: after every stroke the painted pixels go into
// props.value.mask as a PNG whose opaque pixels are the region to replace. Until an image is loaded and
// decoded the painter says it is not ready, and a stroke then is refused out loud, never dropped quietly.
// The Colour tool also paints its colour into a sketch layer (props.value.sketch, opaque where painted):
// the strokes become part of the picture the edit starts from, and part of the region to replace.
//
// What is shown is what the model edits: the painted region hatched in black and white (it reads on every
// colour of a picture, where one tint would vanish on its own colour), what "Grow the mask" adds (the value's
// `grow`, in model pixels, as demo.imaging.grow_mask grows it) hatched the other way, and on a picture that is not
// square the square the model works on (glide.images.EditWindow) outlined.
// Keys, while the painter is shown and no text field has the focus: Ctrl+Z (Cmd+Z) undoes, [ and ] size the brush.

const $ = (selector) => element.querySelector(selector);
const root = $(".painter");
const view = $("canvas.painter-view");
const stage = $(".painter-stage");
const statusLine = $(".painter-status");
const sizeInput = $("input.painter-size");
const sizeText = $(".painter-size-text");
const undoButton = $("button.painter-undo");
const clearButton = $("button.painter-clear");
const fileInput = $("input.painter-file");
const colourInput = $("input.painter-colour");
const swatches = $(".painter-swatches");
const HISTORY_BYTES = 64 * 1024 * 1024;   // undo keeps whole-mask snapshots: at most this much of them
const FILL_TOLERANCE = 48;                // Fill takes neighbours whose colour is this close (0-255 a channel)

let image = null;          // the decoded image being painted on
let W = 0, H = 0;          // its size in pixels
let mask = null;           // Uint8Array(W * H): 1 = to replace
let maskCanvas = null;     // the same mask as opaque pixels (what is sent; shown hatched)
let maskContext = null;
let grow = 0;              // "Grow the mask", in model pixels (the value's grow; kept when a new image comes)
let grownCanvas = null;    // what growing adds around the mask, opaque there (shown hatched the other way)
let modelWindow = null;    // {left, top, side}: the square the model works on, for a picture that is not square
let overlay = null;        // scratch canvas at the view's size, for the hatching
let hatches = {};          // the hatching patterns at the view's pixel ratio, by direction
let sketchCanvas = null;   // the colour strokes, opaque where painted (drawn over the image, sent as the sketch)
let sketchContext = null;
let sketched = 0;          // pixels the Colour tool painted (0: no sketch to send)
let pixels = null;         // the image's RGBA, read once for Fill
let loadedId = null;       // the value.id of the image shown
let loadingId = null;
let history = [];          // mask snapshots for Undo
let operations = 0;        // strokes, rectangles and fills applied to this image (the tests count them)
let tool = "brush";
let gesture = null;        // the stroke or rectangle being drawn
let hover = null;          // where the brush outline is shown

function say(text, kind = "") {
  statusLine.textContent = text;
  statusLine.dataset.kind = kind;
}

function setReady(ready) {
  root.dataset.ready = ready ? "true" : "false";
  root.dataset.imageId = ready ? loadedId : "";
  stage.classList.toggle("painter-empty", !ready);
}

function baseSide() {
  return Math.max(1, Number(props.value?.base) || 32);
}

// One base pixel (the model's own resolution) in image pixels: the image is centre-cropped to a square
// and resized to base x base before the model sees it.
function imagePixelsPerBase() {
  return Math.min(W, H) / baseSide();
}

function brushRadius() {
  return Math.max(0.5, (Number(sizeInput.value) * imagePixelsPerBase()) / 2);
}

function describeSize() {
  const across = W ? ` (${Math.round(2 * brushRadius())} image px)` : "";
  sizeText.textContent = `${sizeInput.value} model px${across}`;
}

// ------------------------------------------------------------------------------------ loading an image
function load(value) {
  if (value && Number.isFinite(Number(value.grow))) grow = Math.max(0, Math.round(Number(value.grow)));
  if (!value || !value.image) {
    loadedId = loadingId = null;
    image = null;
    setReady(false);
    draw();
    say("No image yet: upload one here, or send one from Text to image.");
    return;
  }
  if (value.id === loadingId) return;   // on its way already
  if (value.id === loadedId) {
    // The server echoed the image shown (a new model's base side, another grow): keep the mask painted so far.
    describeSize();
    commit();
    draw();
    return;
  }
  loadingId = value.id;
  setReady(false);
  say("Loading the image… not ready for painting yet.", "wait");
  const next = new Image();
  next.onload = () => {
    if (loadingId !== value.id) return;   // a newer image was asked for meanwhile
    image = next;
    W = next.naturalWidth;
    H = next.naturalHeight;
    mask = new Uint8Array(W * H);
    maskCanvas = document.createElement("canvas");
    maskCanvas.width = W;
    maskCanvas.height = H;
    maskContext = maskCanvas.getContext("2d");
    maskContext.fillStyle = "#000000";
    grownCanvas = document.createElement("canvas");
    grownCanvas.width = W;
    grownCanvas.height = H;
    sketchCanvas = document.createElement("canvas");
    sketchCanvas.width = W;
    sketchCanvas.height = H;
    sketchContext = sketchCanvas.getContext("2d");
    sketched = 0;
    pixels = null;
    history = [];
    operations = 0;
    root.dataset.operations = "0";
    root.dataset.painted = "0";
    const ready = () => {
      if (loadingId !== value.id) return;
      loadedId = value.id;
      loadingId = null;
      layout();
      describeSize();
      updateButtons();
      setReady(true);
      say(mask.some((v) => v) ? "Ready: the mask painted before is kept." : "Ready: paint over the region to replace.");
      commit();
    };
    // A value that carries a mask and a sketch (the component mounted again, its tab shown anew): show them.
    const layers = [[value.mask, (picture) => {
      maskContext.drawImage(picture, 0, 0);
      const alpha = maskContext.getImageData(0, 0, W, H).data;
      for (let i = 0; i < mask.length; i++) mask[i] = alpha[4 * i + 3] > 0 ? 1 : 0;
      redrawMask();
    }], [value.sketch, (picture) => {
      sketchContext.drawImage(picture, 0, 0);
      sketched = countOpaque(sketchContext);
    }]].filter(([url]) => url);
    let pending = layers.length;
    if (!pending) ready();
    for (const [url, apply] of layers) {
      const picture = new Image();
      picture.onload = () => {
        if (picture.naturalWidth === W && picture.naturalHeight === H) apply(picture);
        if (--pending === 0) ready();
      };
      picture.onerror = () => { if (--pending === 0) ready(); };
      picture.src = url;
    }
  };
  next.onerror = () => {
    if (loadingId !== value.id) return;
    loadingId = null;
    say("This image could not be shown: upload a PNG, JPEG or WebP file.", "error");
  };
  next.src = value.image;
}

function loadFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    say(`${file.name} is not an image: upload a PNG, JPEG or WebP file.`, "error");
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    props.value = { id: `upload-${Date.now()}`, image: reader.result, base: baseSide(), grow, mask: null,
                    sketch: null };
    load(props.value);
  };
  reader.readAsDataURL(file);
}

// ------------------------------------------------------------------------------------ showing it
function layout() {
  if (!image) return;
  const width = stage.clientWidth || 400;
  const height = Number(root.dataset.height) || 420;
  const scale = Math.min(width / W, height / H);
  const cssWidth = Math.max(1, Math.floor(W * scale));
  const cssHeight = Math.max(1, Math.floor(H * scale));
  view.style.width = `${cssWidth}px`;
  view.style.height = `${cssHeight}px`;
  const ratio = window.devicePixelRatio || 1;
  view.width = Math.round(cssWidth * ratio);
  view.height = Math.round(cssHeight * ratio);
  draw();
}

let drawQueued = false;
function draw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    const context = view.getContext("2d");
    context.clearRect(0, 0, view.width, view.height);
    if (!image) return;
    context.imageSmoothingEnabled = false;   // the image's pixels as they are (a 32 px image stays sharp)
    context.drawImage(image, 0, 0, view.width, view.height);
    context.drawImage(sketchCanvas, 0, 0, view.width, view.height);   // colour strokes as they will be sent
    if (grow) drawHatched(context, grownCanvas, -1, 0.7);
    drawHatched(context, maskCanvas, 1, 1);
    const sx = view.width / W, sy = view.height / H;
    context.lineWidth = Math.max(1, window.devicePixelRatio || 1);
    if (gesture && gesture.kind === "rect") {
      const r = rectangleOf(gesture);
      outline(context, r.x0 * sx, r.y0 * sy, (r.x1 - r.x0) * sx, (r.y1 - r.y0) * sy);
    }
    if (modelWindow) {
      outline(context, modelWindow.left * sx, modelWindow.top * sy, modelWindow.side * sx, modelWindow.side * sy);
    }
    if (hover && (tool === "brush" || tool === "colour")) {
      context.strokeStyle = "rgba(255,255,255,0.9)";
      context.beginPath();
      context.ellipse(hover.x * sx, hover.y * sy, brushRadius() * sx, brushRadius() * sy, 0, 0, 2 * Math.PI);
      context.stroke();
    }
  });
}

// Black and white diagonal stripes between light washes, at the view's pixels: one of the stripes stands out on any
// colour, and every pixel of the region looks different from the picture's (the wash shows what is underneath).
// `direction` 1 leans one way (the painted region), -1 the other (what growing adds).
function hatchPattern(context, direction) {
  const ratio = window.devicePixelRatio || 1;
  const size = Math.max(8, Math.round(8 * ratio));
  const hatch = hatches[direction];
  if (hatch && hatch.size === size) return hatch.pattern;
  const tile = document.createElement("canvas");
  tile.width = tile.height = size;
  const tileContext = tile.getContext("2d");
  const stripes = tileContext.createImageData(size, size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const d = (x + direction * y + size) % size, i = 4 * (y * size + x);
      const v = d < size / 4 ? 0 : 255;                // a black stripe, a white one, then the wash
      stripes.data[i] = stripes.data[i + 1] = stripes.data[i + 2] = v;
      stripes.data[i + 3] = d < size / 2 ? 255 : 90;
    }
  }
  tileContext.putImageData(stripes, 0, 0);
  hatches[direction] = { size, pattern: context.createPattern(tile, "repeat") };
  return hatches[direction].pattern;
}

// The opaque pixels of `layer` (W x H) drawn onto the view as hatching.
function drawHatched(context, layer, direction, alpha) {
  overlay = overlay || document.createElement("canvas");
  overlay.width = view.width;
  overlay.height = view.height;
  const o = overlay.getContext("2d");
  o.imageSmoothingEnabled = false;
  o.drawImage(layer, 0, 0, view.width, view.height);
  o.globalCompositeOperation = "source-in";
  o.fillStyle = hatchPattern(o, direction);
  o.fillRect(0, 0, view.width, view.height);
  context.globalAlpha = alpha;
  context.drawImage(overlay, 0, 0);
  context.globalAlpha = 1;
}

// A dashed rectangle in black and white, visible on any colour.
function outline(context, x, y, w, h) {
  context.setLineDash([6, 6]);
  for (const [colour, offset] of [["#000", 0], ["#fff", 6]]) {
    context.strokeStyle = colour;
    context.lineDashOffset = offset;
    context.strokeRect(x, y, w, h);
  }
  context.setLineDash([]);
  context.lineDashOffset = 0;
}

// The mask grown by `grow` model pixels in every direction (a square's reach), as demo.imaging.grow_mask
// grows it on the server: 1 where growing adds a pixel. Two passes of a sliding window, linear in the size.
function grownRing() {
  const reach = Math.max(1, Math.floor((grow * Math.min(W, H)) / baseSide() + 0.5));
  const spread = (source, length, lines, at) => {   // any 1 within `reach` along each line
    const out = new Uint8Array(source.length);
    for (let line = 0; line < lines; line++) {
      let count = 0;
      for (let k = 0; k < Math.min(reach, length); k++) count += source[at(line, k)];
      for (let k = 0; k < length; k++) {
        if (k + reach < length) count += source[at(line, k + reach)];
        if (k - reach - 1 >= 0) count -= source[at(line, k - reach - 1)];
        out[at(line, k)] = count > 0 ? 1 : 0;
      }
    }
    return out;
  };
  const rows = spread(mask, W, H, (y, x) => y * W + x);
  const grown = spread(rows, H, W, (x, y) => y * W + x);
  for (let i = 0; i < grown.length; i++) grown[i] = grown[i] && !mask[i] ? 1 : 0;
  return grown;
}

function drawGrown() {
  const context = grownCanvas.getContext("2d");
  context.clearRect(0, 0, W, H);
  let added = 0;
  if (grow && mask.some((v) => v)) {
    const ring = grownRing(), rgba = new ImageData(W, H);
    for (let i = 0; i < ring.length; i++) {
      if (ring[i]) {
        rgba.data[4 * i + 3] = 255;
        added += 1;
      }
    }
    context.putImageData(rgba, 0, 0);
  }
  root.dataset.grown = String(added);
  return added;
}

// The square the model works on (glide.images.EditWindow.of, the same arithmetic): the short side's square
// over the grown mask's bounding box, longer when the box is, up to the long side. None for a square picture.
// The painted box is said too (data-box: x0,y0,x1,y1; the tests read it).
function updateModelWindow() {
  modelWindow = null;
  root.dataset.window = root.dataset.box = "";
  const grown = grownCanvas.getContext("2d").getImageData(0, 0, W, H).data;
  const box = [W, H, 0, 0], grownBox = [W, H, 0, 0];
  const extend = (b, x, y) => {
    b[0] = Math.min(b[0], x); b[1] = Math.min(b[1], y); b[2] = Math.max(b[2], x + 1); b[3] = Math.max(b[3], y + 1);
  };
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const painted = mask[y * W + x];
      if (painted) extend(box, x, y);
      if (painted || grown[4 * (y * W + x) + 3]) extend(grownBox, x, y);
    }
  }
  if (box[2] <= box[0]) return;
  root.dataset.box = box.join(",");
  if (W === H) return;
  const [x0, y0, x1, y1] = grownBox;
  const side = Math.min(Math.max(W, H), Math.max(Math.min(W, H), x1 - x0, y1 - y0));
  const start = (lo, hi, extent) => side >= extent ? Math.floor((extent - side) / 2)
    : Math.min(Math.max(Math.floor((lo + hi - side) / 2), 0), extent - side);
  modelWindow = { left: start(x0, x1, W), top: start(y0, y1, H), side };
  root.dataset.window = `${modelWindow.left},${modelWindow.top},${modelWindow.side}`;
}

// ------------------------------------------------------------------------------------ painting
function toImage(event) {
  const box = view.getBoundingClientRect();
  return { x: ((event.clientX - box.left) / box.width) * W, y: ((event.clientY - box.top) / box.height) * H };
}

function setSpan(y, x0, x1) {
  x0 = Math.max(0, x0);
  x1 = Math.min(W - 1, x1);
  if (y < 0 || y >= H || x1 < x0) return;
  mask.fill(1, y * W + x0, y * W + x1 + 1);
  maskContext.fillRect(x0, y, x1 - x0 + 1, 1);
  if (gesture && gesture.colour) {
    sketchContext.fillStyle = gesture.colour;
    sketchContext.fillRect(x0, y, x1 - x0 + 1, 1);
  }
}

// Every pixel whose centre is within the brush's radius of (cx, cy).
function stamp(cx, cy) {
  const r = brushRadius();
  for (let y = Math.floor(cy - r); y <= Math.ceil(cy + r); y++) {
    const dy = y + 0.5 - cy;
    if (dy * dy > r * r) continue;
    const dx = Math.sqrt(r * r - dy * dy);
    setSpan(y, Math.ceil(cx - dx - 0.5), Math.floor(cx + dx - 0.5));
  }
}

// Stamps along a segment close enough together that the stroke is one unbroken band.
function strokeTo(point) {
  const last = gesture.last;
  const distance = Math.hypot(point.x - last.x, point.y - last.y);
  const step = Math.max(0.5, brushRadius() / 2);
  for (let t = step; t < distance; t += step) {
    stamp(last.x + ((point.x - last.x) * t) / distance, last.y + ((point.y - last.y) * t) / distance);
  }
  stamp(point.x, point.y);
  gesture.last = point;
}

function rectangleOf(g) {
  const clampX = (v) => Math.min(W, Math.max(0, v)), clampY = (v) => Math.min(H, Math.max(0, v));
  return { x0: Math.floor(clampX(Math.min(g.start.x, g.last.x))), x1: Math.ceil(clampX(Math.max(g.start.x, g.last.x))),
           y0: Math.floor(clampY(Math.min(g.start.y, g.last.y))), y1: Math.ceil(clampY(Math.max(g.start.y, g.last.y))) };
}

// The 4-connected region of pixels of about the clicked pixel's colour (a shape, or the background).
function fillFrom(point) {
  if (!pixels) {
    const scratch = document.createElement("canvas");
    scratch.width = W;
    scratch.height = H;
    const context = scratch.getContext("2d");
    context.drawImage(image, 0, 0);
    pixels = context.getImageData(0, 0, W, H).data;
  }
  const sx = Math.min(W - 1, Math.max(0, Math.floor(point.x))), sy = Math.min(H - 1, Math.max(0, Math.floor(point.y)));
  const seed = (sy * W + sx) * 4;
  const close = (i) => Math.abs(pixels[4 * i] - pixels[seed]) <= FILL_TOLERANCE &&
                       Math.abs(pixels[4 * i + 1] - pixels[seed + 1]) <= FILL_TOLERANCE &&
                       Math.abs(pixels[4 * i + 2] - pixels[seed + 2]) <= FILL_TOLERANCE;
  const seen = new Uint8Array(W * H);
  const todo = [sy * W + sx];
  seen[todo[0]] = 1;
  while (todo.length) {
    const i = todo.pop();
    const x = i % W, y = (i - x) / W;
    setSpan(y, x, x);
    for (const j of [x > 0 ? i - 1 : -1, x < W - 1 ? i + 1 : -1, y > 0 ? i - W : -1, y < H - 1 ? i + W : -1]) {
      if (j >= 0 && !seen[j] && close(j)) {
        seen[j] = 1;
        todo.push(j);
      }
    }
  }
}

// Undo keeps snapshots of both layers: the mask (a byte a pixel) and the sketch (four).
function remember() {
  history.push({ mask: mask.slice(), sketch: sketchContext.getImageData(0, 0, W, H), sketched });
  let bytes = history.length * mask.length * 5;
  while (history.length > 1 && bytes > HISTORY_BYTES) {
    history.shift();
    bytes -= mask.length * 5;
  }
}

function countOpaque(context) {
  const alpha = context.getImageData(0, 0, W, H).data;
  let n = 0;
  for (let i = 3; i < alpha.length; i += 4) n += alpha[i] > 0 ? 1 : 0;
  return n;
}

function redrawMask() {
  const rgba = new ImageData(W, H);
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) rgba.data[4 * i + 3] = 255;
  }
  maskContext.putImageData(rgba, 0, 0);
}

function paintedCount() {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  return n;
}

// The mask as it is now goes into the component's value (what Inpaint sends); what growing adds and the
// model's square follow it.
function commit() {
  if (!mask || root.dataset.ready !== "true") return;
  const painted = paintedCount();
  root.dataset.painted = String(painted);
  root.dataset.sketched = String(sketched);
  drawGrown();
  updateModelWindow();
  props.value = { id: loadedId, image: props.value?.image, base: baseSide(), grow,
                  mask: painted ? maskCanvas.toDataURL("image/png") : null,
                  sketch: sketched ? sketchCanvas.toDataURL("image/png") : null };
}

function finish(what) {
  operations += 1;
  root.dataset.operations = String(operations);
  updateButtons();
  draw();
  commit();
  const share = (100 * Number(root.dataset.painted)) / (W * H);
  say(`${what}: ${share.toFixed(1)}% of the image is marked for replacing.`);
}

function updateButtons() {
  undoButton.disabled = history.length === 0;
  clearButton.disabled = !mask || !mask.some((v) => v);
}

function notReady(event) {
  if (root.dataset.ready === "true") return false;
  event.preventDefault();
  say(loadingId ? "Not ready yet: the image is still loading. Paint again in a moment."
                : "Nothing to paint on yet: upload an image, or send one from Text to image.", "error");
  return true;
}

// On the stage, not the canvas: with no image the canvas is hidden, and a press there must still be answered.
stage.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || notReady(event) || event.target !== view) return;
  event.preventDefault();
  view.setPointerCapture(event.pointerId);   // the stroke goes on when the pointer leaves the canvas
  const point = toImage(event);
  remember();
  if (tool === "fill") {
    fillFrom(point);
    finish("Filled");
    return;
  }
  gesture = { kind: tool === "rect" ? "rect" : "brush", pointer: event.pointerId, start: point, last: point,
              colour: tool === "colour" ? colourInput.value : null };
  if (gesture.kind === "brush") stamp(point.x, point.y);
  draw();
});

view.addEventListener("pointermove", (event) => {
  if (!image) return;
  hover = toImage(event);
  if (gesture && event.pointerId === gesture.pointer) {
    // A fast drag delivers several positions per event: every one of them is part of the stroke.
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of points.length ? points : [event]) {
      const point = toImage(e);
      if (gesture.kind === "brush") strokeTo(point);
      else gesture.last = point;
    }
  }
  draw();
});

function endGesture(event) {
  if (!gesture || event.pointerId !== gesture.pointer) return;
  const done = gesture;
  gesture = null;
  if (done.kind === "rect") {
    const r = rectangleOf(done);
    if (r.x1 - r.x0 < 1 || r.y1 - r.y0 < 1) {
      history.pop();
      draw();
      say("Drag to draw a rectangle: press, move to the opposite corner, release.", "error");
      return;
    }
    for (let y = r.y0; y < r.y1; y++) setSpan(y, r.x0, r.x1 - 1);
    finish("Rectangle marked");
  } else {
    if (done.colour) sketched = countOpaque(sketchContext);
    finish(done.colour ? "Colour stroke painted" : "Stroke painted");
  }
}

view.addEventListener("pointerup", endGesture);
view.addEventListener("pointercancel", endGesture);
view.addEventListener("pointerleave", () => { hover = null; draw(); });

for (const button of element.querySelectorAll("button[data-tool]")) {
  button.addEventListener("click", () => {
    tool = button.dataset.tool;
    for (const b of element.querySelectorAll("button[data-tool]")) b.setAttribute("aria-pressed", String(b === button));
    draw();
  });
}

sizeInput.addEventListener("input", () => { describeSize(); draw(); });

// The swatches (the shapes family's colours, "name:#rrggbb,..."): a click picks the colour and the Colour tool.
function chooseColour(hex) {
  colourInput.value = hex;
  for (const b of swatches.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.colour === hex));
  element.querySelector('button[data-tool="colour"]').click();
}
for (const entry of (swatches.dataset.palette || "").split(",").filter(Boolean)) {
  const [name, hex] = entry.split(":");
  const button = document.createElement("button");
  button.type = "button";
  button.title = name;
  button.setAttribute("aria-label", `Colour ${name}`);
  button.dataset.colour = hex;
  button.style.background = hex;
  button.addEventListener("click", () => chooseColour(hex));
  swatches.appendChild(button);
}
colourInput.addEventListener("input", () => chooseColour(colourInput.value));

function undo() {
  if (!history.length) return;
  const previous = history.pop();
  mask = previous.mask;
  sketchContext.putImageData(previous.sketch, 0, 0);
  sketched = previous.sketched;
  redrawMask();
  operations += 1;
  root.dataset.operations = String(operations);
  updateButtons();
  draw();
  commit();
  say("Undone.");
}
undoButton.addEventListener("click", undo);

clearButton.addEventListener("click", () => {
  remember();
  mask.fill(0);
  sketchContext.clearRect(0, 0, W, H);
  sketched = 0;
  redrawMask();
  finish("Cleared");
});

fileInput.addEventListener("change", () => loadFile(fileInput.files[0]));
stage.addEventListener("dragover", (event) => event.preventDefault());
stage.addEventListener("drop", (event) => {
  event.preventDefault();
  loadFile(event.dataTransfer.files[0]);
});

// Keyboard shortcuts, on the page while the painter is shown; a text field keeps its own keys (its own undo).
function typingIn(target) {
  if (!target) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && !["range", "checkbox", "radio", "button", "color", "file"].includes(target.type);
}
function onKey(event) {
  if (!element.isConnected) {             // this painter was unmounted: its keys go with it
    document.removeEventListener("keydown", onKey);
    return;
  }
  if (root.dataset.ready !== "true" || !root.checkVisibility() || typingIn(event.target)) return;
  if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if ((event.key === "[" || event.key === "]") && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    const size = Number(sizeInput.value) + (event.key === "]" ? 1 : -1);
    sizeInput.value = String(Math.min(Number(sizeInput.max), Math.max(Number(sizeInput.min), size)));
    describeSize();
    draw();
    say(`Brush: ${sizeInput.value} model px ([ smaller, ] larger).`);
  }
}
document.addEventListener("keydown", onKey);

new ResizeObserver(layout).observe(stage);
watch("value", () => load(props.value));
load(props.value);
