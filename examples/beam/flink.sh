#!/usr/bin/env bash
# Score every image under an S3 prefix on a Flink cluster (Beam's portable Flink runner), the workers running the
# same container as on Dataflow (see README.md). s3:// needs Beam's AWS extra in the image and where this runs:
# pip install "apache-beam[aws]".
set -euo pipefail
IMAGE=registry.example.org/fakedetect/beam-worker:0.1.0

fakedetect sweep s3://archive/runs/general "s3://archive/photos/**" --out s3://archive/verdicts/photos \
  --runner flink --engine onnxruntime --batch-size 64 --threads 1 \
  --flink_master flink-jobmanager:8081 --parallelism 32 \
  --environment_type DOCKER --environment_config "$IMAGE"
