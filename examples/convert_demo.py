"""Convert the demo classifier that ships with edgedl to INT8 and print how it compares with FP32.

    python examples/convert_demo.py [OUTPUT_DIR]
"""

import sys
from pathlib import Path

import edgedl

demo = Path(edgedl.__file__).parent / "data" / "demo"
out = Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "shapes.edgedl"
bundle = edgedl.convert(demo / "shapes_classifier.onnx", out, int8=True, fp16=True, force=True,
                        labels=demo / "labels.txt", preprocess={"preset": "raw01"})
for name, result in bundle.manifest.validation["variants"].items():
    logits = result["outputs"]["logits"]
    print(f"{name}: scheme {result.get('scheme', '-')}, cosine {logits['cosine']:.4f}, "
          f"top-1 agreement {logits['top1_agreement']:.2f}, {result['speedup_vs_fp32']:.2f}x FP32 speed")
print("bundle:", bundle.path)
