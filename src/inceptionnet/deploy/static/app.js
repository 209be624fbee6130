// The page of `inceptionnet serve`: send a chosen or dropped image to POST /predict and draw the top-5.
"use strict";

const $ = (id) => document.getElementById(id);
let camAvailable = false;

async function loadInfo() {
  const info = await (await fetch("info")).json();
  camAvailable = info.cam_available;
  $("model").textContent = `${info.model} (${info.precision}, ${info.runtime}) \u2014 ${info.classes.length} classes, ` +
    `${info.preprocessing.input_size} px input \u2014 ${info.file}`;
  if (!camAvailable) {
    $("cam").disabled = true;
    $("cam-note").hidden = false;
    $("cam-note").textContent = "Grad-CAM is unavailable for this model: it is an ONNX file, which cannot be " +
      "differentiated. Serve a PyTorch checkpoint to see it.";
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function drawTop(predictions) {
  const list = $("top5");
  list.replaceChildren();
  for (const p of predictions) {
    const item = document.createElement("li");
    const label = document.createElement("div");
    label.className = "label";
    const name = document.createElement("span");
    name.className = "class";
    name.textContent = p.class;
    const value = document.createElement("span");
    value.className = "probability";
    value.textContent = `${(100 * p.probability).toFixed(1)}%`;
    label.append(name, value);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p.probability).toFixed(2)}%`;
    bar.append(fill);
    item.append(label, bar);
    list.append(item);
  }
}

async function classify(file) {
  $("error").hidden = true;
  $("preview").src = URL.createObjectURL(file);
  const useCam = camAvailable && $("cam").checked;
  const body = new FormData();
  body.append("files", file, file.name);
  let response;
  try {
    response = await fetch(`predict?topk=5&cam=${useCam}`, { method: "POST", body });
  } catch (e) {
    showError(`the server did not answer: ${e}`);
    return;
  }
  const answer = await response.json();
  if (!response.ok) {
    $("result").hidden = true;
    showError(`${response.status}: ${answer.error || JSON.stringify(answer.detail)}`);
    return;
  }
  const result = answer.results[0];
  drawTop(result.predictions);
  $("overlay").hidden = !result.cam;
  if (result.cam) $("overlay").src = result.cam;
  $("caption").textContent = `${file.name} \u2014 ${answer.latency_ms.toFixed(1)} ms`;
  $("result").hidden = false;
  document.body.dataset.state = "done";
}

$("file").addEventListener("change", () => { if ($("file").files.length) classify($("file").files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]);
});
loadInfo().catch((e) => showError(`cannot read /info: ${e}`));
