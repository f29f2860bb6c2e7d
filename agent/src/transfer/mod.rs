//! Export and import of tables as SQL, JSON or CSV files.
