#!/usr/bin/env python3
"""Full int8 quantisation (weights and activations) of a face embedder into the QLinearConv form,
for measuring that form against the shipped weight-only model; facegate does not ship it.

    python3 tools/quantize_qlinear.py IN.onnx OUT.onnx CROPS_DIR

Activation ranges are calibrated on the aligned 112x112 crops in CROPS_DIR (RGB PNG, fed as 0..255
NCHW floats, SFace's input). Needs `pip install onnx numpy onnxruntime pillow`.
"""
import os
import sys

import numpy as np
from PIL import Image
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static


class Crops(CalibrationDataReader):
    def __init__(self, folder, input_name):
        files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
        self.items = iter(
            {input_name: np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"), dtype=np.float32)
             .transpose(2, 0, 1)[None]}
            for f in files
        )

    def get_next(self):
        return next(self.items, None)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, crops = sys.argv[1:]
    quantize_static(src, dst, Crops(crops, "data"), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    # Only standard ONNX operators: Gemm and Mul would become com.microsoft ones.
                    op_types_to_quantize=["Conv"])
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
