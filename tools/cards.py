"""Model cards for the SFace variants the benchmarks and platform checks measure (not shipped)."""
import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "anchors")
CROPS = os.path.join(ROOT, "tests", "fixtures", "aligned")
OUT = os.path.join(ROOT, "target", "models")
FP32 = os.path.join(SHARED, "sface_2021dec_fp32_from_int8bq.onnx")
SHIPPED = os.path.join(ROOT, "models", "sface_int8w.json")


def card_for(onnx_path, form):
    """Writes target/models/sface_<form>.json describing onnx_path with the shipped card's settings."""
    os.makedirs(OUT, exist_ok=True)
    with open(SHIPPED) as f:
        card = json.load(f)
    with open(onnx_path, "rb") as f:
        card["sha256"] = hashlib.sha256(f.read()).hexdigest()
    card.update(file=os.path.abspath(onnx_path), form=form, name=f"sface-{form}")
    path = os.path.join(OUT, f"sface_{form}.json")
    with open(path, "w") as f:
        json.dump(card, f, indent=1)
    return path


def qlinear_card():
    """A card for the full-int8 QLinearConv SFace (made with onnxruntime if missing)."""
    qlinear = os.path.join(OUT, "sface_qlinear.onnx")
    if not os.path.exists(qlinear):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "quantize_qlinear.py"), FP32, qlinear, CROPS],
                       check=True)
    return card_for(qlinear, "qlinear")


def three_forms():
    """Cards for the three embedding forms a platform check compares: f32 (OpenCV Zoo's fp32
    copy), the shipped QDQ int8-weight model, and the full-int8 QLinearConv model."""
    return [card_for(FP32, "f32"), SHIPPED, qlinear_card()]
