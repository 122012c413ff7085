//! PTX text -> `ast::Module` (nom).
