() => {
  // The Zoom panel: drag over the image to mark the region; its edges (in percent of the
  // image) go into the panel's four number fields, which keyboard users type into directly.
  // The marked region is drawn over the image either way.
  const FIELDS = ["left", "top", "width", "height"];
  const field = (name) => document.querySelector(`#zoom-${name} input[type='number']`);
  const picture = () => document.querySelector("#zoom-image img");

  // Where the picture is drawn inside its element (it is scaled to fit, centred).
  const drawnArea = (img) => {
    const box = img.getBoundingClientRect();
    const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
    const width = img.naturalWidth * scale;
    const height = img.naturalHeight * scale;
    return {
      left: box.left + (box.width - width) / 2,
      top: box.top + (box.height - height) / 2,
      width,
      height,
    };
  };
  const clamp = (value) => Math.min(Math.max(value, 0), 100);

  const outline = (img) => {
    let mark = document.getElementById("zoom-mark");
    if (!mark) {
      mark = document.createElement("div");
      mark.id = "zoom-mark";
      mark.setAttribute("aria-hidden", "true");
    }
    if (mark.parentElement !== img.parentElement) {
      img.parentElement.style.position = "relative";
      img.parentElement.appendChild(mark);
    }
    return mark;
  };
  const drawRegion = () => {
    const img = picture();
    if (!img || !img.naturalWidth) return;
    const [left, top, width, height] = FIELDS.map((name) => Number(field(name)?.value || 0));
    const area = drawnArea(img);
    const parent = img.parentElement.getBoundingClientRect();
    Object.assign(outline(img).style, {
      left: `${area.left - parent.left + (area.width * left) / 100}px`,
      top: `${area.top - parent.top + (area.height * top) / 100}px`,
      width: `${(area.width * width) / 100}px`,
      height: `${(area.height * height) / 100}px`,
    });
  };
  const setFields = (values) => {
    FIELDS.forEach((name, index) => {
      const input = field(name);
      if (!input) return;
      input.value = String(Math.round(values[index] * 10) / 10);
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
    drawRegion();
  };

  let start = null; // where the drag began, in percent of the picture
  const percentAt = (img, event) => {
    const area = drawnArea(img);
    return [
      clamp(((event.clientX - area.left) / area.width) * 100),
      clamp(((event.clientY - area.top) / area.height) * 100),
    ];
  };
  const regionTo = (event) => {
    const [x, y] = percentAt(picture(), event);
    return [Math.min(start[0], x), Math.min(start[1], y), Math.abs(x - start[0]), Math.abs(y - start[1])];
  };
  document.addEventListener("pointerdown", (event) => {
    const img = picture();
    if (!img || event.target !== img || event.button !== 0) return;
    event.preventDefault(); // no dragging the image itself
    start = percentAt(img, event);
  });
  document.addEventListener("pointermove", (event) => {
    if (start) setFields(regionTo(event));
  });
  document.addEventListener("pointerup", (event) => {
    if (!start) return;
    setFields(regionTo(event));
    start = null;
  });
  document.addEventListener("input", (event) => {
    if (event.target.closest?.("#zoom-panel")) drawRegion();
  });
  // The picture changes when another image is chosen, and loads later than the panel opens.
  document.addEventListener("load", (event) => {
    if (event.target === picture()) drawRegion();
  }, true);
}
