//! Chat templates. (Placeholder.)
