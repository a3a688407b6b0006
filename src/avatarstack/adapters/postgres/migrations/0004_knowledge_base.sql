-- Knowledge base: uploaded file hashes on versions, the files themselves, the embedding cache,
-- the golden set and the search log; job listings by owner and by age.

ALTER TABLE document_versions ADD COLUMN file_sha256 TEXT;
CREATE INDEX document_versions_file_sha256 ON document_versions (file_sha256);
CREATE INDEX document_versions_content_hash ON document_versions (content_hash);

-- Uploaded files by the SHA-256 (hex) of their bytes; kept while a version names them.
CREATE TABLE kb_blobs (
    sha256 TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- Embeddings by chunk text hash, as little-endian float32 (4 bytes per dimension).
CREATE TABLE kb_embedding_cache (
    embedder TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    vector BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (embedder, dimensions, text_hash)
);

-- expected_document_id is deliberately not a foreign key: documents may be deleted.
CREATE TABLE kb_golden_set (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    expected_document_id TEXT,
    expected_phrase TEXT,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE kb_searches (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    generation_id TEXT NOT NULL,
    user_id TEXT,
    query TEXT NOT NULL,
    k INTEGER NOT NULL,
    result_count INTEGER NOT NULL,
    top_score DOUBLE PRECISION,
    embed_ms DOUBLE PRECISION NOT NULL,
    search_ms DOUBLE PRECISION NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX kb_searches_generation ON kb_searches (generation_id, created_at);
CREATE INDEX kb_searches_created ON kb_searches (created_at);

CREATE INDEX jobs_owner ON jobs (owner_id, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
