#!/usr/bin/env python3
"""Record OpenCV 4.6's YuNet detections, SFace alignment and SFace features as the reference for
facegate's recognition stages.

    /usr/bin/python3 tools/opencv_face_reference.py

Uses Debian's python3-opencv 4.6 with the fp32 models in ../shared/anchors. OpenCV 4.6's
cv2.FaceDetectorYN only knows the 2022 YuNet outputs, so the 2023mar network runs through cv2.dnn
and its outputs are decoded here the way later OpenCV versions' FaceDetectorYN does (score
sqrt(cls * obj), anchor-free boxes and landmarks per stride 8/16/32, then cv2.dnn.NMSBoxes). The
network needs sides that are multiples of 32, so each photo is padded right and bottom with black.
Alignment and features are OpenCV's own cv2.FaceRecognizerSF.alignCrop and .feature. Writes tests/fixtures/opencv_faces.json and, for each
photo's most confident face, OpenCV's aligned 112x112 crop as tests/fixtures/aligned/<photo>.png.
"""
import json
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "anchors")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
ALIGNED = os.path.join(ROOT, "tests", "fixtures", "aligned")


def yunet(net, padded, score_threshold, nms_threshold):
    ph, pw = padded.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(padded))
    names = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    out = dict(zip(names, net.forward(names)))
    faces = []
    for stride in (8, 16, 32):
        cols = pw // stride
        cls, obj = out[f"cls_{stride}"][0, :, 0], out[f"obj_{stride}"][0, :, 0]
        bbox, kps = out[f"bbox_{stride}"][0], out[f"kps_{stride}"][0]
        for i in range(cls.shape[0]):
            score = float(np.sqrt(np.clip(cls[i], 0, 1) * np.clip(obj[i], 0, 1)))
            r, c = divmod(i, cols)
            cx, cy = (c + bbox[i, 0]) * stride, (r + bbox[i, 1]) * stride
            w, h = np.exp(bbox[i, 2]) * stride, np.exp(bbox[i, 3]) * stride
            marks = []
            for n in range(5):
                marks += [float((kps[i, 2 * n] + c) * stride), float((kps[i, 2 * n + 1] + r) * stride)]
            faces.append([float(cx - w / 2), float(cy - h / 2), float(w), float(h)] + marks + [score])
    keep = cv2.dnn.NMSBoxes([f[0:4] for f in faces], [f[14] for f in faces], score_threshold, nms_threshold)
    return sorted((faces[i] for i in np.array(keep).flatten()), key=lambda f: -f[14])


def main():
    if not cv2.__version__.startswith("4.6"):
        sys.exit(f"need OpenCV 4.6, found {cv2.__version__}")
    cv2.setNumThreads(1)
    os.makedirs(ALIGNED, exist_ok=True)
    net = cv2.dnn.readNetFromONNX(os.path.join(SHARED, "yunet_2023mar_fp32_from_int8bq.onnx"))
    rec = cv2.FaceRecognizerSF.create(os.path.join(SHARED, "sface_2021dec_fp32_from_int8bq.onnx"), "")
    out = {"opencv": cv2.__version__, "score_threshold": 0.6, "nms_threshold": 0.3, "photos": {}}
    for name in sorted(f for f in os.listdir(PHOTOS) if f.endswith((".jpg", ".png"))):
        img = cv2.imread(os.path.join(PHOTOS, name))
        h, w = img.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        padded = cv2.copyMakeBorder(img, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=0)
        faces = yunet(net, padded, out["score_threshold"], out["nms_threshold"])
        entry = {"faces": [{"box": f[0:4], "landmarks": f[4:14], "score": f[14]} for f in faces]}
        if faces:
            crop = rec.alignCrop(img, np.array(faces[0], dtype=np.float32))
            cv2.imwrite(os.path.join(ALIGNED, name.rsplit(".", 1)[0] + ".png"), crop)
            entry["feature"] = rec.feature(crop).flatten().tolist()
        out["photos"][name] = entry
        print(name, len(faces), "faces")
    with open(os.path.join(ROOT, "tests", "fixtures", "opencv_faces.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
