// The explorer's search box (an anywidget): a text input with a suggestion list that the arrow
// keys move through and Enter picks from. The kernel ranks the suggestions (memrecall.jupyter.
// suggest); this file only shows them. It also keeps the explorer's keys: a keydown listener on
// the explorer's container stops every key (but Ctrl/Cmd/Alt shortcuts such as Ctrl+S) from
// reaching JupyterLab, so ArrowUp on the model picker or "b" in a box never acts on the notebook.

function keepKeys(el) {
  let tries = 0;
  const attach = () => {
    const box = el.closest(".memrecall-explorer");
    if (!box) {
      if (tries++ < 100) setTimeout(attach, 100);
      return;
    }
    if (box.dataset.memrecallKeys === "kept") return;
    box.dataset.memrecallKeys = "kept";
    box.addEventListener("keydown", (event) => {
      if (!event.ctrlKey && !event.metaKey && !event.altKey) event.stopPropagation();
    });
  };
  attach();
}

function render({ model, el }) {
  el.classList.add("memrecall-search");
  const row = document.createElement("div");
  row.className = "memrecall-search-row";
  const label = document.createElement("label");
  label.textContent = model.get("description");
  const input = document.createElement("input");
  input.type = "text";
  input.className = "memrecall-search-input";
  input.placeholder = model.get("placeholder");
  input.value = model.get("value");
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  input.spellcheck = false;
  const count = document.createElement("span");
  count.className = "memrecall-search-count";
  row.append(label, input, count);
  const list = document.createElement("ul");
  list.className = "memrecall-search-list";
  list.setAttribute("role", "listbox");
  el.append(row, list);

  let highlight = -1;
  let timer = null;

  const items = () => model.get("suggestions");
  const paint = () => {
    list.replaceChildren();
    items().forEach((text, i) => {
      const li = document.createElement("li");
      li.textContent = text;
      li.setAttribute("role", "option");
      li.className = i === highlight ? "memrecall-search-item active" : "memrecall-search-item";
      li.setAttribute("aria-selected", i === highlight ? "true" : "false");
      li.addEventListener("mousedown", (event) => {
        event.preventDefault();
        submit(text);
      });
      list.append(li);
    });
    const open = items().length > 0;
    list.style.display = open ? "block" : "none";
    input.setAttribute("aria-expanded", open ? "true" : "false");
    count.textContent = model.get("count");
    const active = list.querySelector(".active");
    if (active) active.scrollIntoView({ block: "nearest" });
  };
  const sendQuery = () => {
    model.set("query", input.value);
    model.save_changes();
  };
  const submit = (highlighted) => {
    clearTimeout(timer);
    model.send({ type: "enter", typed: input.value, highlighted: highlighted ?? null });
    highlight = -1;
  };

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(sendQuery, 60);
  });
  input.addEventListener("keydown", (event) => {
    const n = items().length;
    if (event.key === "ArrowDown" && n) {
      highlight = (highlight + 1) % n;
      paint();
      event.preventDefault();
    } else if (event.key === "ArrowUp" && n) {
      highlight = highlight <= 0 ? n - 1 : highlight - 1;
      paint();
      event.preventDefault();
    } else if (event.key === "Enter") {
      submit(highlight >= 0 && highlight < n ? items()[highlight] : null);
      event.preventDefault();
    } else if (event.key === "Escape") {
      highlight = -1;
      model.set("suggestions", []);
      model.save_changes();
      paint();
    }
  });
  input.addEventListener("blur", () => {
    setTimeout(() => {
      list.style.display = "none";
    }, 150);
  });
  input.addEventListener("focus", () => {
    if (items().length) list.style.display = "block";
  });

  model.on("change:suggestions", () => {
    highlight = -1;
    paint();
  });
  model.on("change:count", paint);
  model.on("change:value", () => {
    if (input.value !== model.get("value")) input.value = model.get("value");
  });
  paint();
  keepKeys(el);
}

export default { render };
