//! Datasets: text corpora, tokenization and packing (being written).
