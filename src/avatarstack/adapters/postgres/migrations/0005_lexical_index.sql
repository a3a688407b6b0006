-- The lexical (BM25) index of each index generation, serialised by its indexer; deleted with it.

CREATE TABLE kb_lexical_indexes (
    generation_id TEXT PRIMARY KEY REFERENCES kb_generations (id) ON DELETE CASCADE,
    indexer TEXT NOT NULL,
    tokenizer TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    data BYTEA NOT NULL
);
