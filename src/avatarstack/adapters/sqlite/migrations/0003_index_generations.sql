-- Stored chunks of document versions, index generations and the active-generation pointer.

CREATE TABLE document_chunks (
    document_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    chunk_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    page_start INTEGER NOT NULL,
    page_end INTEGER NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    heading TEXT,
    hash TEXT NOT NULL,
    PRIMARY KEY (document_id, version, chunk_index),
    FOREIGN KEY (document_id, version)
        REFERENCES document_versions (document_id, version) ON DELETE CASCADE
);

CREATE TABLE kb_generations (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('building', 'ready', 'failed')),
    embedder TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    document_versions TEXT NOT NULL DEFAULT '{}',
    chunk_count INTEGER NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    job_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX kb_generations_created ON kb_generations (created_at);

-- At most one row (singleton = 1): which generation serves queries.
CREATE TABLE kb_active_generation (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    generation_id TEXT NOT NULL REFERENCES kb_generations (id),
    updated_at TEXT NOT NULL
);
