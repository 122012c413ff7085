//! Static checks on parsed PTX.
