"""Code written for the original mongo_client, run against exporter.MongoSessions with only the import changed."""
