#!/usr/bin/env python3
"""Writes the fuzzers' starting inputs into tests/fuzz/seeds/<target>/ from the test fixtures.

Small on purpose (libFuzzer's default input limit is 4 KB): the fuzzer grows them. Needs Pillow
(`pip install pillow`) for the tiny JPEG and PNG variants. Run from anywhere; safe to run again.
"""
import hashlib
import io
import json
import pathlib
import struct

from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIX = ROOT / "tests" / "fixtures"


def put(target, name, data):
    d = HERE / "seeds" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def tiny_images():
    src = Image.open(FIX / "aligned" / "obama.png").convert("RGB")
    out = {}
    for size in (8, 16, 24):
        img = src.resize((size, size))
        for mode in ("RGB", "L"):
            im = img.convert(mode)
            b = io.BytesIO()
            im.save(b, "JPEG", quality=60)
            out[f"{mode}{size}.jpg"] = b.getvalue()
            b = io.BytesIO()
            im.save(b, "JPEG", quality=60, progressive=True)
            out[f"{mode}{size}-progressive.jpg"] = b.getvalue()
            b = io.BytesIO()
            im.save(b, "PNG")
            out[f"{mode}{size}.png"] = b.getvalue()
    b = io.BytesIO()
    img.convert("RGBA").save(b, "PNG")
    out["rgba24.png"] = b.getvalue()
    return out


images = tiny_images()
for name, data in images.items():
    put("image_decode", name, data)
jpegs = [v for k, v in sorted(images.items()) if k.endswith(".jpg")]
put("mjpeg_split", "two-frames", jpegs[0] + jpegs[1])
put("mjpeg_split", "multipart", b"--b\r\nContent-Type: image/jpeg\r\n\r\n" + jpegs[2] + b"\r\n--b\r\n\r\n" + jpegs[3])
put("mjpeg_split", "truncated", jpegs[0] + jpegs[1][:100])

put("cascade_xml", "tilted.xml", (FIX / "tilted_test_cascade.xml").read_bytes())
put("cascade_xml", "tiny-haar.xml", b"""<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>HAAR</featureType><height>4</height><width>4</width>
  <featureParams><maxCatCount>0</maxCatCount></featureParams>
  <stages><_><stageThreshold>-1.5</stageThreshold><weakClassifiers>
    <_><internalNodes>0 -1 0 0.5</internalNodes><leafValues>-1. 1.</leafValues></_>
  </weakClassifiers></_></stages>
  <features><_><rects><_>0 0 2 2 -1.</_><_>1 1 1 1 2.</_></rects><tilted>0</tilted></_></features>
</cascade></opencv_storage>""")
put("cascade_xml", "tiny-lbp.xml", b"""<?xml version="1.0"?>
<opencv_storage>
<cascade><stageType>BOOST</stageType><featureType>LBP</featureType><height>6</height><width>6</width>
  <featureParams><maxCatCount>256</maxCatCount></featureParams>
  <stages><_><stageThreshold>-0.5</stageThreshold><weakClassifiers>
    <_><internalNodes>0 -1 0 -1 -2 4 8 16 32 64 127</internalNodes><leafValues>-1. 1.</leafValues></_>
  </weakClassifiers></_></stages>
  <features><_><rect>0 0 2 2</rect></_></features>
</cascade></opencv_storage>""")

card = (ROOT / "models" / "sface_int8w.json").read_bytes()
put("model_card", "sface-card", card)
# A card then a tiny ONNX graph (one Gemm behind DequantizeLinear: the dense-head pattern).
def onnx_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def field(num, wire, payload):
    key = onnx_varint((num << 3) | wire)
    if wire == 2:
        return key + onnx_varint(len(payload)) + payload
    return key + onnx_varint(payload)
def s(x):
    return x.encode()
def node(op, inputs, outputs, ints=()):
    attrs = b"".join(field(5, 2, field(1, 2, s(k)) + field(3, 0, v) + field(20, 0, 2)) for k, v in ints)
    return b"".join(field(1, 2, s(i)) for i in inputs) + b"".join(field(2, 2, s(o)) for o in outputs) + field(4, 2, s(op)) + attrs
def tensor(name, dtype, dims, raw):
    return b"".join(field(1, 0, d) for d in dims) + field(2, 0, dtype) + field(8, 2, s(name)) + field(9, 2, raw)
graph = (
    field(1, 2, node("DequantizeLinear", ["wq", "ws", "wz"], ["w"]))
    + field(1, 2, node("Gemm", ["x", "w", "b"], ["y"]))
    + field(2, 2, s("g"))
    + field(5, 2, tensor("wq", 3, [2, 2], bytes([1, 255, 3, 4])))
    + field(5, 2, tensor("ws", 1, [2], struct.pack("<2f", 0.5, 0.25)))
    + field(5, 2, tensor("wz", 3, [2], bytes([0, 0])))
    + field(5, 2, tensor("b", 1, [2], struct.pack("<2f", 0.0, 1.0)))
    + field(11, 2, field(1, 2, s("x")))
    + field(12, 2, field(1, 2, s("y")))
)
model = field(1, 0, 7) + field(7, 2, graph) + field(8, 2, field(2, 0, 13))
put("model_card", "card-and-dense-onnx", card + b"\0" + model)
# Block-quantised weights (opset 21 DequantizeLinear with block_size, non-zero int8 zero points)
# reshaped by a constant int64 shape, as in OpenCV Zoo's *_int8bq.onnx.
graph = (
    field(1, 2, node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], [("axis", 1), ("block_size", 2)]))
    + field(1, 2, node("Reshape", ["w", "shape"], ["w4"]))
    + field(1, 2, node("Conv", ["x", "w4"], ["y"]))
    + field(2, 2, s("g"))
    + field(5, 2, tensor("wq", 3, [2, 3], bytes([1, 255, 3, 4, 128, 6])))
    + field(5, 2, tensor("ws", 1, [2, 2], struct.pack("<4f", 0.5, 0.25, 2.0, 1.0)))
    + field(5, 2, tensor("wz", 3, [2, 2], bytes([1, 254, 3, 250])))
    + field(5, 2, tensor("shape", 7, [4], struct.pack("<4q", 0, -1, 1, 1)))
    + field(11, 2, field(1, 2, s("x")))
    + field(11, 2, field(1, 2, s("w_original")))
    + field(12, 2, field(1, 2, s("y")))
)
model = field(1, 0, 7) + field(7, 2, graph) + field(8, 2, field(2, 0, 21))
put("model_card", "card-and-blocked-onnx", card + b"\0" + model)

# Inputs that crashed the ONNX rewrites before they checked what the file claims (found in review,
# kept as regressions): a BatchNormalization output with no inputs, a dense weight claiming 2^40
# rows over 4 bytes of data, and a per-axis DequantizeLinear over a zero-sized dimension.
def regression(target, name, data):
    d = HERE / "regressions" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)
def model_of(nodes, inits, inputs, outputs):
    g = b"".join(field(1, 2, n) for n in nodes) + field(2, 2, s("g"))
    g += b"".join(field(5, 2, t) for t in inits)
    g += b"".join(field(11, 2, field(1, 2, s(i))) for i in inputs)
    g += b"".join(field(12, 2, field(1, 2, s(o))) for o in outputs)
    return field(1, 0, 7) + field(7, 2, g) + field(8, 2, field(2, 0, 13))
# A 4-bit (ONNX INT4, type 22) dense head in blocks of 2: two rows of four packed values.
put("model_card", "card-and-int4-head-onnx", card + b"\0" + model_of(
    [node("DequantizeLinear", ["wq", "ws"], ["w"], [("axis", 1), ("block_size", 2)]),
     node("Gemm", ["x", "w", "b"], ["y"], [("transB", 1)])],
    [tensor("wq", 22, [2, 4], bytes([0x8f, 0x17, 0x70, 0xa3])),
     tensor("ws", 1, [2, 2], struct.pack("<4f", 0.5, 0.25, 2.0, -1.0)),
     tensor("b", 1, [2], struct.pack("<2f", 0.0, 1.0))],
    ["x"], ["y"]))
regression("model_card", "batchnorm-without-inputs", card + b"\0" + model_of(
    [node("BatchNormalization", [], ["y"])], [], [], ["y"]))
regression("model_card", "dense-rows-beyond-data", card + b"\0" + model_of(
    [node("DequantizeLinear", ["wq", "ws"], ["w"]), node("Gemm", ["x", "w", "b"], ["y"], [("transB", 1)])],
    [tensor("wq", 3, [1 << 40, 2], bytes([1, 2, 3, 4])),
     tensor("ws", 1, [1], struct.pack("<f", 0.5)),
     tensor("b", 1, [2], struct.pack("<2f", 0.0, 1.0))],
    ["x"], ["y"]))
regression("model_card", "dequantize-zero-dimension", card + b"\0" + model_of(
    [node("DequantizeLinear", ["q", "sc"], ["w"], [("axis", 0)]), node("Identity", ["w"], ["y"])],
    [tensor("q", 3, [2, 0], bytes([1, 2, 3, 4])),
     tensor("sc", 1, [2], struct.pack("<2f", 0.5, 0.25))],
    [], ["y"]))

dim = 4
vec = struct.pack("<4f", 0.5, 0.5, 0.5, 0.5)
emb = b"FGEMB\x00\x01\x00" + struct.pack("<II", dim, 1) + struct.pack("<I", 1) + vec + vec
index = {
    "format_version": 1,
    "model": {"name": "fuzz", "fingerprint": "00", "embedding_dim": dim},
    "embeddings_file": "embeddings-00000001.bin",
    "embeddings_sha256": "@SHA@",
    "next_id": 2,
    "people": [{"id": "p000001", "name": "Ada", "enrolled_unix": 0, "shots": 1, "crops": ["crops/p000001-0.png"]}],
}
put("gallery_reader", "one-person", json.dumps(index).encode() + b"\0" + emb)
index["people"] = []
index["next_id"] = 1
put("gallery_reader", "empty", json.dumps(index).encode() + b"\0" + b"FGEMB\x00\x01\x00" + struct.pack("<II", dim, 0))

def photo_record(path, faces):
    b = path.encode()
    return struct.pack("<I", len(b)) + b + struct.pack("<QqIIIBI", 4096, 1700000000, 7, 640, 480, 0, faces)


face = struct.pack("<4iB10f", 10, 20, 64, 64, 1, *range(10))
put("photo_index_data", "two-photos",
    b"FGIDX\x00\x01\x00" + struct.pack("<III", dim, 2, 1)
    + photo_record("/photos/a.jpg", 1) + photo_record("/photos/b.png", 0) + face + vec)
put("photo_index_data", "empty", b"FGIDX\x00\x01\x00" + struct.pack("<III", dim, 0, 0))

put("settings_toml", "example.toml", (ROOT / "cross" / "config.example.toml").read_bytes())
put("settings_toml", "flat.toml", b'camera = 0\nthreshold = 0.4\nstats = true\nmqtt_topic = "a/b"\n')

# Sync messages: mode 0 is the wire message (envelope and HMAC with the fuzzer's key), any other
# first byte the body alone (the target signs it).
import base64, hashlib, hmac
SYNC_KEY = b"fuzzing-key-0123456789"
def sync_body(**over):
    body = {"id": "p000001-00000000000000aa", "version": 3, "origin": "00000000000000aa",
            "name": "Ada", "enrolled_unix": 1700000000, "model": "ab" * 32, "deleted": False,
            "shots": [{"embedding": [0.25, -0.5, 0.125, 1.0], "crop": ""},
                      {"embedding": [0.5, 0.5, -0.25, 0.0], "crop": ""}]}
    body.update(over)
    return json.dumps(body, separators=(",", ":"))
def sealed(body):
    mac = hmac.new(SYNC_KEY, body.encode(), hashlib.sha256).hexdigest()
    return b"\0" + json.dumps({"body": body, "mac": mac}).encode()
put("sync_message", "person", sealed(sync_body()))
put("sync_message", "tombstone", sealed(sync_body(deleted=True, name="", shots=[])))
put("sync_message", "body-person", b"\1" + sync_body().encode())
put("sync_message", "body-crop", b"\1" + sync_body(shots=[{"embedding": [1.0], "crop": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()}]).encode())
put("sync_message", "forged", b"\0" + json.dumps({"body": sync_body(), "mac": "00" * 32}).encode())
put("sync_message", "body-negatives", b"\1" + sync_body(negatives=[{"embedding": [0.0, 1.0, 0.0, 0.0], "crop": ""}]).encode())

# Manifest chunks: the same two modes, on the topic of chunk 0 of board 00000000000000aa.
def manifest_body(**over):
    body = {"board": "00000000000000aa", "chunk": 0, "chunks": 2,
            "entries": [["p000001-00000000000000aa", 3, "00000000000000aa", False],
                        ["p000002-00000000000000bb", 1, "00000000000000bb", True]]}
    body.update(over)
    return json.dumps(body, separators=(",", ":"))
put("sync_manifest", "chunk", sealed(manifest_body()))
put("sync_manifest", "body-chunk", b"\1" + manifest_body().encode())
put("sync_manifest", "body-empty", b"\1" + manifest_body(entries=[], chunks=1).encode())
put("sync_manifest", "forged", b"\0" + json.dumps({"body": manifest_body(), "mac": "00" * 32}).encode())
print("seeds written to", HERE / "seeds")
