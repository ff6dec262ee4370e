() => {
  // Loupe for screen-reader and keyboard users: a polite live region that announces a reply
  // sentence by sentence (the chat log itself stays quiet, or it would read the whole growing
  // reply again and again), keyboard shortcuts, reading aloud with the browser's own speech
  // synthesis (offline, with the system's voices), focus after actions, and names for Gradio's
  // icon buttons that lack one.
  const POLL_MS = 250;
  const KEEP_ANNOUNCEMENTS = 5; // older ones are removed; screen readers ignore removals
  const MAX_CHUNK_CHARS = 200; // a run this long without a sentence end is read at a space
  // Gradio's progress flickers off for a moment between events on a busy machine: a reply has
  // ended when it has been off this long.
  const END_QUIET_MS = 750;
  const SENTENCE_END = /[.!?…]+["”’)\]]*(?=\s)|\n+/g;
  const $ = (selector) => document.querySelector(selector);

  // -- the live region -------------------------------------------------------------------
  const announcer = document.createElement("div");
  announcer.id = "announcer";
  announcer.className = "visually-hidden";
  announcer.setAttribute("aria-live", "polite");
  announcer.setAttribute("aria-relevant", "additions");
  document.body.appendChild(announcer);
  let announced = 0;
  const announce = (text) => {
    const line = document.createElement("p");
    line.textContent = text;
    line.dataset.n = String(++announced);
    announcer.appendChild(line);
    while (announcer.children.length > KEEP_ANNOUNCEMENTS) announcer.firstElementChild.remove();
  };

  // A sentence shown at the foot of the page for a while, and said through the live region.
  const NOTICE_MS = 12000;
  const notice = (text) => {
    announce(text);
    let box = $("#loupe-notice");
    if (!box) {
      box = document.createElement("div");
      box.id = "loupe-notice";
      box.setAttribute("aria-hidden", "true"); // the live region says it once already
      document.body.appendChild(box);
    }
    box.textContent = text;
    box.hidden = false;
    clearTimeout(box.hideTimer);
    box.hideTimer = setTimeout(() => (box.hidden = true), NOTICE_MS);
  };

  // The answer part of the chat's last reply (a reply may start with a Thinking section).
  const latestAnswer = () => {
    const replies = document.querySelectorAll("#chat .bot");
    const reply = replies[replies.length - 1];
    const parts = reply?.querySelectorAll(".message:not(:has(.thought-group))") || [];
    return parts.length ? parts[parts.length - 1] : reply || null;
  };
  const answerText = (element) => (element?.innerText || "").replace(/\s*…$/, "").trim();
  const busy = () => {
    const tracker = $("#chat [data-testid='status-tracker']");
    return !!tracker && !tracker.classList.contains("hide");
  };

  // A run of text in pieces of at most MAX_CHUNK_CHARS, each cut at a space where it can be.
  const pieces = (run) => {
    const cut = [];
    while (run.length > MAX_CHUNK_CHARS) {
      const space = run.lastIndexOf(" ", MAX_CHUNK_CHARS);
      const end = space > 0 ? space : MAX_CHUNK_CHARS;
      cut.push(run.slice(0, end));
      run = run.slice(end);
    }
    return [...cut, run];
  };
  // The finished sentences of `text` after `from`: [sentences, where the unread rest starts].
  // A long sentence (the reply may grow by several hundred characters between two looks) is
  // read in pieces, and so is a long run without a sentence end, all but its last piece.
  const finishedSentences = (text, from) => {
    const sentences = [];
    let start = from;
    SENTENCE_END.lastIndex = from;
    for (let match; (match = SENTENCE_END.exec(text)); ) {
      const end = match.index + match[0].length;
      sentences.push(...pieces(text.slice(start, end)));
      start = end;
    }
    const rest = pieces(text.slice(start));
    rest.pop(); // unfinished: it waits for more
    for (const piece of rest) {
      sentences.push(piece);
      start += piece.length;
    }
    return [sentences.map((s) => s.trim()).filter(Boolean), start];
  };

  let generating = false;
  let readUpTo = 0;
  let answerBefore = ""; // the last answer when this reply began: not the new one yet
  let quietSince = 0; // when the progress went off, while a reply is being announced
  let lastAction = "";
  const watch = () => {
    const chatLog = $("#chat [role='log']");
    if (chatLog && chatLog.getAttribute("aria-live") !== "off") chatLog.setAttribute("aria-live", "off");
    const now = busy();
    quietSince = now ? 0 : quietSince || Date.now();
    const ended = !now && Date.now() - quietSince >= END_QUIET_MS;
    if (now && !generating) {
      generating = true;
      document.body.classList.add("loupe-generating"); // Stop shows instead of Send
      readUpTo = 0;
      answerBefore = answerText(latestAnswer());
      announce("Generating");
    }
    if (!generating) return;
    const latest = answerText(latestAnswer());
    const text = latest !== answerBefore || ended ? latest : "";
    const [sentences, next] = finishedSentences(text, Math.min(readUpTo, text.length));
    sentences.forEach(announce);
    readUpTo = next;
    if (ended) {
      generating = false;
      document.body.classList.remove("loupe-generating");
      const rest = text.slice(readUpTo).trim();
      if (rest) announce(rest);
      announce("Done");
      if (autoRead()) speak(text);
      focusAfterReply();
    }
  };
  setInterval(watch, POLL_MS);
  // Gradio redraws its controls at any time: fix each redraw before anything reads it.
  new MutationObserver(repairControls).observe(document.body, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeFilter: ["name"], // Gradio names its radio buttons apart again after a change
  });
  repairControls();

  // -- focus -----------------------------------------------------------------------------
  const messageBox = () => $("#message textarea");
  const focusAfterReply = () => {
    // Move focus only if it is still where the action left it, never away from elsewhere.
    const where = document.activeElement;
    const untouched = !where || where === document.body || where.closest("#message");
    if (!untouched) return;
    const altBox = $("#alt-text textarea");
    if (lastAction === "describe" && altBox && altBox.offsetParent !== null && altBox.value) {
      altBox.focus();
    } else if (lastAction) {
      messageBox()?.focus();
    }
    lastAction = "";
  };
  // In describe mode at the Alt text level, a reply ends in the alt-text box.
  const sendAction = () =>
    $("#describe-level input[value='alt_text']")?.checked ? "describe" : "send";
  document.addEventListener("click", (event) => {
    if (event.target.closest("#message .submit-button")) {
      lastAction = sendAction();
    } else if (event.target.closest("#message .stop-button")) {
      messageBox()?.focus();
    } else if (event.target.closest("#new-chat")) {
      setTimeout(() => messageBox()?.focus(), POLL_MS);
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && event.target.closest?.("#message")) {
      lastAction = sendAction();
    }
  });

  // -- reading aloud ---------------------------------------------------------------------
  const autoRead = () => !!$("#auto-read input")?.checked;
  const speak = (text) => {
    if (!("speechSynthesis" in window) || !text) return;
    speechSynthesis.cancel();
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.rate = Number($("#read-rate input[type='number']")?.value) || 1;
    speechSynthesis.speak(utterance);
  };
  const stopReading = () => window.speechSynthesis?.cancel();
  // Browsers list the system's voices a moment after the page loads; none at all (headless
  // browsers, some Linux desktops) and speak() would say nothing without a word.
  const VOICES_WAIT_MS = 1000;
  const NO_VOICE =
    "No voice for reading aloud is installed on this system. On Linux, install espeak-ng and " +
    "speech-dispatcher (sudo apt install espeak-ng speech-dispatcher), then restart the " +
    "browser; on Windows or macOS, add a voice in the system's speech settings.";
  const voices = () =>
    new Promise((resolve) => {
      if (!("speechSynthesis" in window)) return resolve([]);
      if (speechSynthesis.getVoices().length) return resolve(speechSynthesis.getVoices());
      const listed = () => resolve(speechSynthesis.getVoices());
      speechSynthesis.addEventListener("voiceschanged", listed, { once: true });
      setTimeout(listed, VOICES_WAIT_MS);
    });
  const readLatest = async () => {
    const text = answerText(latestAnswer());
    if (!text) return notice("There is no answer to read aloud yet.");
    if (!(await voices()).length) return notice(NO_VOICE);
    speak(text);
  };

  // -- keyboard shortcuts (Alt+Shift+key; event.code, so that macOS's Option letters work) --
  const goToLatestAnswer = () => {
    const answer = latestAnswer();
    if (!answer) {
      announce("No answer yet");
      return;
    }
    answer.setAttribute("tabindex", "-1");
    answer.scrollIntoView({ block: "nearest" });
    answer.focus();
  };
  const stopAnswer = () => {
    const stop = $("#message .stop-button");
    if (stop) stop.click();
    stopReading();
    messageBox()?.focus();
  };
  const shortcuts = {
    KeyL: goToLatestAnswer,
    KeyS: stopAnswer,
    KeyR: () => announce(answerText(latestAnswer()) || "No answer yet"),
    KeyM: () => messageBox()?.focus(),
    KeyD: () => {
      lastAction = sendAction();
      $("#describe-button")?.click();
    },
    KeyH: () => $("#help-dialog")?.showModal(),
  };
  document.addEventListener("keydown", (event) => {
    if (!event.altKey || !event.shiftKey || event.ctrlKey || event.metaKey) return;
    const action = shortcuts[event.code];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // -- the camera and zoom panels: Escape closes the open one; a closed camera is off -------
  const shown = (selector) => !!$(selector)?.offsetParent;
  const cameraOff = () =>
    document.querySelectorAll("#webcam video").forEach((video) => {
      video.srcObject?.getTracks().forEach((track) => track.stop());
    });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented || $("dialog[open]")) return;
    const close = ["#camera-close", "#zoom-close"].find(shown);
    if (close) {
      event.preventDefault();
      $(close).click();
    }
  });
  document.addEventListener(
    "click",
    (event) => {
      const closing =
        event.target.closest("#camera-close") ||
        (event.target.closest("#camera-button") && shown("#camera-panel"));
      if (closing) cameraOff();
    },
    true // before Gradio's own handlers change the panel
  );

  // -- Gradio's controls: names where they lack one, radio groups, roles ------------------
  function repairControls() {
    document.querySelectorAll("button, [role='button']").forEach((control) => {
      if (control.textContent.trim() || control.getAttribute("aria-label")?.trim()) return;
      const name =
        control.getAttribute("title")?.trim() ||
        // Gradio draws a chat image with alt="" inside this button (it drops the message's
        // alt_text), so the button's name is the image's text alternative.
        (control.closest("#chat .user .image-container") && "Open the image you sent") ||
        (control.closest(".image-container, .image-preview") && "Open image") ||
        (control.closest(".scroll-down-button-container") && "Scroll to the latest message") ||
        control.querySelector("img")?.alt;
      if (name) control.setAttribute("aria-label", name);
    });
    // A collapsed section's title (Thinking, Image detail) is itself the toggle: its arrow
    // button is a duplicate, and inert, so that the toggle holds no control of its own (a
    // click on the arrow still reaches the title).
    document.querySelectorAll("#chat .thought-group .title button").forEach((arrow) => {
      arrow.setAttribute("aria-hidden", "true");
      arrow.setAttribute("tabindex", "-1");
      arrow.inert = true;
    });
    // Gradio names each radio button apart, which breaks the group: the arrow keys would not
    // move between choices and each would be its own Tab stop. One name per group mends both.
    document.querySelectorAll("fieldset, [role='radiogroup']").forEach((group, index) => {
      const radios = group.querySelectorAll("input[type='radio']");
      if (!radios.length) return;
      group.dataset.radioGroup ||= `loupe-radio-${index}-${Math.random().toString(36).slice(2)}`;
      radios.forEach((radio) => {
        if (radio.name !== group.dataset.radioGroup) radio.name = group.dataset.radioGroup;
      });
    });
    // The message box's thumbnails say they are list items in a row that is no list (it holds
    // the upload button too): each is a labelled group instead.
    document.querySelectorAll("#message [role='listitem']").forEach((item) => {
      item.setAttribute("role", "group");
    });
    // The empty chat's examples are buttons in a "list" without list items: a labelled group.
    document.querySelectorAll("#chat .examples[role='list']").forEach((examples) => {
      examples.setAttribute("role", "group");
      examples.setAttribute("aria-label", "Examples");
    });
    // Gradio labels an empty file box's icon; a label needs a role to be read.
    document.querySelectorAll("div.empty[aria-label]:not([role])").forEach((box) => {
      box.setAttribute("role", "img");
    });
    // The Batch view's progress line is read out as it changes, politely.
    document.querySelector("#batch-progress:not([role])")?.setAttribute("role", "status");
    // The table's lock icon on a column that cannot be edited: a label needs a role.
    document.querySelectorAll("[aria-label='Static column']:not([role])").forEach((icon) => {
      icon.setAttribute("role", "img");
    });
    // A gallery thumbnail that shows a caption is named by it, not "Thumbnail 1 of 6".
    document.querySelectorAll("button[aria-label^='Thumbnail ']").forEach((thumbnail) => {
      if (thumbnail.innerText.trim()) thumbnail.removeAttribute("aria-label");
    });
    // A file box that holds files is a button around their list, with links and buttons of
    // its own: a labelled group then (its Upload button adds more); empty, it says what it does.
    const boxes = "button[aria-label='common.upload'], [data-upload-box], " +
      "button.upload-container:has(> [data-testid='upload-text'])";
    document.querySelectorAll(boxes).forEach(
      (box) => {
        box.dataset.uploadBox = "";
        const holdsFiles = !!box.querySelector("a, button, input:not([type='file'])");
        box.setAttribute("role", holdsFiles ? "group" : "button");
        // Empty, its visible words ("Drop File Here - or - Click to Upload") are its name, so
        // that speech control users can say what they see.
        if (holdsFiles) box.setAttribute("aria-label", "Files added");
        else if (box.textContent.trim()) box.removeAttribute("aria-label");
        else box.setAttribute("aria-label", "Add files");
      }
    );
    // A conversation's title, cut with an ellipsis in the side list (page.css), whole on hover.
    document.querySelectorAll(".conversation-group label").forEach((choice) => {
      const title = choice.textContent.trim();
      if (choice.title !== title) choice.title = title;
    });
    // An image whose alt repeats the text beside it is read twice: make it decorative.
    document.querySelectorAll("footer img[alt]").forEach((image) => {
      if (image.alt && image.parentElement?.textContent.includes(image.alt)) image.alt = "";
    });
  }

  // -- narrow windows (200% zoom and phones): the open sidebar would cover the whole page ---
  const NARROW_PX = 768;
  const collapseSidebarWhenNarrow = () => {
    const toggle = $("button[aria-label='Toggle Sidebar']");
    if (!toggle) return false;
    if (window.innerWidth < NARROW_PX && toggle.parentElement.classList.contains("open")) {
      toggle.click();
    }
    return true;
  };
  const waitForSidebar = setInterval(() => {
    if (collapseSidebarWhenNarrow()) clearInterval(waitForSidebar);
  }, POLL_MS);

  window.loupe = {
    latestText: () => answerText(latestAnswer()),
    readLatest,
    stopReading,
    announce,
  };
}
