//! The three task types, each with its own buffer.

use crate::error::Error;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    Deduction,
    Abduction,
    Induction,
}

impl TaskType {
    pub const ALL: [TaskType; 3] = [
        TaskType::Deduction,
        TaskType::Abduction,
        TaskType::Induction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Deduction => "deduction",
            TaskType::Abduction => "abduction",
            TaskType::Induction => "induction",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_index(index: u8) -> Option<Self> {
        TaskType::ALL.get(index as usize).copied()
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::UnknownTaskType(s.to_string()))
    }
}
