"""`pioneer-tui predict MODEL --input FILE --output FILE`: batched predictions as JSONL rows
`{"input", "prediction", "confidence"}` (plus the row's `id`), cached per model content and input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from engine.records import Span
from pioneer_tui.cli import Context
from pioneer_tui.commands.train import quiet_transformers
from store.artifacts import atomic_write_jsonl


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict", help="run a trained model over a JSONL file of inputs",
        description='MODEL is a registry id or name (see `pioneer-tui models`) or a model folder. Input rows '
        'are {"input": text} (other fields are ignored, "id" is kept) or bare JSON strings.')
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("--input", required=True, type=Path, metavar="FILE")
    parser.add_argument("--output", required=True, type=Path, metavar="FILE")
    parser.add_argument("--threshold", type=float,
                        help="decision threshold: labels under it become the fallback label, entities under "
                        "it are dropped")
    parser.add_argument("--fallback-label", help="label for low-confidence classifications (default: the "
                        "model's negative label such as 'oos', else null)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-cache", action="store_true", help="always run the model (skip the prediction cache)")
    parser.add_argument("--json", action="store_true", help="print where the predictions went as JSON")
    parser.set_defaults(handler=run)


def model_dir(ctx: Context, model: str) -> Path:
    """A registry id / name, else a folder."""
    row = ctx.store.models.get(model)
    if row is not None:
        if not row.get("artifact_path"):
            raise UsageError(f"model {model} has no artifact (status {row['status']}): pick a trained model")
        return Path(row["artifact_path"])
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    raise UsageError(f"model {model!r} is neither a registry id/name nor a folder: see `pioneer-tui models`")


def read_inputs(path: Path) -> list[tuple[str, Any]]:
    """(text, id) per non-blank line; errors name the file, line and field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, IsADirectoryError):
        raise UsageError(f"{path}: no such file; give a JSONL file of {{\"input\": ...}} rows") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        text = value.get("input") if isinstance(value, dict) else value
        if not isinstance(text, str):
            raise UsageError(f"{path}:{number}: field 'input': expected a string")
        rows.append((text, value.get("id") if isinstance(value, dict) else None))
    if not rows:
        raise UsageError(f"{path}: no inputs: give at least one JSON line")
    return rows


def _jsonable(output: Any, text: str) -> Any:
    if isinstance(output, tuple | list) and all(isinstance(s, Span) for s in output):
        return [{"start": s.start, "end": s.end, "label": s.label, "score": s.score, "text": text[s.start:s.end]}
                for s in output]
    return output


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.models.predictor import CachedPredictor, load_predictor  # torch: only when predicting

    folder = model_dir(ctx, args.model)
    rows = read_inputs(args.input)
    quiet_transformers()
    kwargs = {"batch_size": args.batch_size, "fallback_label": args.fallback_label}
    predictor = (load_predictor(folder, **kwargs) if args.no_cache
                 else CachedPredictor.for_artifact(folder, ctx.store.cache, **kwargs))
    predictions = predictor.predict([text for text, _ in rows], args.threshold)
    out = []
    for (text, row_id), pred in zip(rows, predictions, strict=True):
        row = {"input": text, "prediction": _jsonable(pred.output, text), "confidence": pred.confidence}
        out.append(row if row_id is None else {"id": row_id, **row})
    atomic_write_jsonl(args.output, out)
    hits = predictor.hits if isinstance(predictor, CachedPredictor) else None
    if args.json:
        ctx.emit_json({"output": str(args.output), "predictions": len(out), "from_cache": hits})
        return 0
    print(f"wrote {len(out)} predictions to {args.output}{'' if hits is None else f' ({hits} from cache)'}")
    return 0
