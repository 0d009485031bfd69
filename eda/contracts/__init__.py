"""The contract machinery: the CloudEvents envelope, the open registry of event schemas, fast
load/dump plans compiled from them, and their export as JSON Schema and AsyncAPI."""
