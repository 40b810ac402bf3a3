"""The cloud: a real S3-compatible server outside the cluster, for cloud snapshots."""

from playground.cloud.server import BUCKET, Cloud, CloudError, CloudStatus, default_cloud_dir

__all__ = ["BUCKET", "Cloud", "CloudError", "CloudStatus", "default_cloud_dir"]
