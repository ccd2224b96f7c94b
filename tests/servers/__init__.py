"""Real servers started by the tests (no mocks): SeaweedFS as the S3 object store."""
