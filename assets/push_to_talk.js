() => {
  // Desktop push-to-talk: holding the talk button or F8 presses the hidden "down" button once;
  // letting go presses "up". The server records from the local microphone in between.
  const KEY = "F8";
  let held = false;
  const press = (id) => document.getElementById(id)?.click();
  const down = () => {
    if (!held) {
      held = true;
      press("push-to-talk-down");
    }
  };
  const up = () => {
    if (held) {
      held = false;
      press("push-to-talk-up");
    }
  };
  document.addEventListener("pointerdown", (event) => {
    if (event.target.closest("#push-to-talk")) down();
  });
  document.addEventListener("pointerup", up);
  document.addEventListener("keydown", (event) => {
    if (event.key === KEY && document.getElementById("push-to-talk")) {
      event.preventDefault();
      down();
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === KEY) up();
  });
}
