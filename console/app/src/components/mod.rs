//! Pieces the pages share.

pub mod code_editor;
pub mod confirm;
pub mod day_chart;
pub mod diff_view;
pub mod loaded;
pub mod nav;
pub mod pager;
pub mod status;
