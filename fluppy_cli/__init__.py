"""fluppy: resumable S3 uploads with short-lived credentials, signed locally."""

__version__ = "0.1.0"
