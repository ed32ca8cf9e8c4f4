"""README.md model cards (YAML front matter through huggingface_hub's ModelCard) for run
directories and transformers exports: library, base model, pipeline tag, labels, metrics with
their dataset and split (from the run's metrics.json), the base model's license where known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptcls.classifier.config import ClassifierConfig

CARD_FILE = "README.md"
# The presets whose weights come from somewhere other than their official hub repository.
PRESET_BASES = {
    "smollm2-135m-instruct-q4": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "qwen2.5-coder-0.5b-instruct-q4": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "qwen2.5-coder-1.5b-instruct-q4": "Qwen/Qwen2.5-Coder-1.5B-Instruct",
    "gemma3-270m-q4": "google/gemma-3-270m",
}
# Hub ID prefix -> license identifier (the hub's). Only what the base's own card states; Qwen
# by exact ID because sizes differ (Qwen2.5-3B and -72B carry Qwen's own licenses).
LICENSES = {
    "HuggingFaceTB/SmolLM2-": "apache-2.0",
    "Qwen/Qwen2.5-0.5B": "apache-2.0",
    "Qwen/Qwen2.5-Coder-0.5B-Instruct": "apache-2.0",
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": "apache-2.0",
    "Qwen/Qwen3-0.6B": "apache-2.0",
    "google/gemma-3-": "gemma",
    "openai-community/gpt2": "mit",
    "meta-llama/Llama-3.2-": "llama3.2",
}
SMS_DATASET = ("ucirvine/sms_spam", "SMS Spam Collection")
SPLITS = ("test", "validation")


def base_model(config: ClassifierConfig) -> str | None:
    """The hub ID of the pretrained backbone, where gptcls knows it (None: random weights, a
    local file, or a tiny test preset)."""
    from gptcls.models import PRESETS
    from gptcls.models.weights.hub import is_hub_id

    name = str(config.backbone.get("model", ""))
    if config.backbone.get("weights", "pretrained") != "pretrained" or not name:
        return None
    if name in PRESET_BASES:
        return PRESET_BASES[name]
    if name in PRESETS:
        source = PRESETS[name][1]
        return source if source and is_hub_id(source) else None
    return name if not Path(name).exists() and is_hub_id(name) else None


def base_license(base: str | None) -> str | None:
    if base is None:
        return None
    return next((lic for prefix, lic in LICENSES.items() if base.startswith(prefix)), None)


def dataset(metrics: dict[str, Any]) -> tuple[str, str]:
    """(dataset id, name) of the data the run was evaluated on."""
    options = metrics.get("train_config", {})
    source = options.get("data") or options.get("test")
    if not source or Path(str(source)).name == "SMSSpamCollection":  # the UCI file's name
        return SMS_DATASET
    return Path(str(source)).stem, Path(str(source)).name


def eval_results(metrics: dict[str, Any]) -> list[Any]:
    """Accuracy and macro-F1 on the test and validation splits, as hub EvalResults."""
    from huggingface_hub import EvalResult

    data_id, data_name = dataset(metrics)
    out = []
    for split in SPLITS:
        report = metrics.get("reports", {}).get(split)
        if not report:
            continue
        for metric, key, config in (("accuracy", "accuracy", None), ("f1", "macro_f1", "macro")):
            out.append(EvalResult(
                task_type="text-classification", dataset_type=data_id, dataset_name=data_name,
                dataset_split=split, metric_type=metric, metric_value=round(report[key], 6),
                metric_config=config, metric_name=f"{split} {key.replace('_', '-')}"))
    return out


def model_card(config: ClassifierConfig, metrics: dict[str, Any] | None, name: str,
               usage: str, library: str = "gptcls") -> Any:
    """A huggingface_hub ModelCard: the YAML metadata, then `usage` (markdown) and a summary."""
    from huggingface_hub import ModelCard, ModelCardData

    base = base_model(config)
    results = eval_results(metrics) if metrics else None
    data = ModelCardData(
        library_name=library, base_model=base, license=base_license(base),
        pipeline_tag="text-classification", model_name=name if results else None,
        eval_results=results or None, metrics=["accuracy", "f1"] if results else None,
        datasets=[SMS_DATASET[0]] if metrics and dataset(metrics) == SMS_DATASET else None,
        tags=["gptcls", "text-classification"], labels=list(config.labels))
    backbone = config.backbone.get("model", config.model.family)
    lines = [f"# {name}", "",
             f"A text classifier fine-tuned with gptcls from `{backbone}` "
             f"({config.model.family}, {config.backbone.get('weights', 'pretrained')} weights).",
             "", f"Labels: {', '.join(config.labels)}.", "", usage.strip(), "",
             *_summary(config, metrics)]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _summary(config: ClassifierConfig, metrics: dict[str, Any] | None) -> list[str]:
    lines = ["## Training", "",
             f"- pooling `{config.pooling}`, trainable `{config.trainable}` "
             f"({config.trainable_blocks} blocks), head bias: {config.head_bias}",
             f"- max length {config.max_length} tokens, truncation `{config.truncate}`, "
             f"decision threshold {config.threshold}"]
    if metrics:
        data_id, data_name = dataset(metrics)
        options = metrics.get("train_config", {})
        split = ("the --validation and --test files" if options.get("test") else
                 f"split {options.get('split')} of the file, seed {options.get('split_seed')}")
        lines += ["", f"## Results ({data_name}; {split})", "",
                  "| split | accuracy | macro-F1 |",
                  "| --- | --- | --- |"]
        for split in SPLITS:
            if report := metrics.get("reports", {}).get(split):
                lines.append(f"| {split} | {report['accuracy']:.4f} | {report['macro_f1']:.4f} |")
    return lines


def run_usage(directory: Path) -> str:
    return f"""## Use

```bash
gptcls classify {directory.name} "some text"
```

```python
from gptcls import Classifier

clf = Classifier.load("{directory.name}")
clf.predict(["some text"])
```"""


def write_model_card(directory: str | Path, config: ClassifierConfig,
                     metrics: dict[str, Any] | None = None, usage: str | None = None,
                     library: str = "gptcls") -> Path:
    """Write `directory/README.md` (a run directory's card unless `usage` says otherwise)."""
    directory = Path(directory)
    card = model_card(config, metrics, directory.resolve().name,
                      usage or run_usage(directory.resolve()), library)
    path = directory / CARD_FILE
    card.save(path)
    return path
