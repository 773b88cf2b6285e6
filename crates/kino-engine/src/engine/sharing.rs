//! Stopping the sharing of one torrent at the user's request (the web app's Sharing page).

use kino_store::Store;
use librqbit::dht::Id20;

use super::Engine;
use crate::EngineError;
use crate::source::infohash_hex;

impl Engine {
    /// Stops sharing one torrent now and across restarts: marks it stopped in the database
    /// (so [`Engine::resume_shared`] skips it) and pauses it, unless a player is reading it
    /// (then it pauses at the next start; nothing is uploaded after the app restarts).
    /// Playing it again later resumes the download but not the seeding at the next start.
    pub async fn stop_sharing(&self, ih: &Id20) -> Result<(), EngineError> {
        let store: &Store = &self.inner.store;
        store.set_share_stopped(&infohash_hex(ih), true)?;
        if let Some(entry) = self.entry(ih)
            && !entry.in_use()
            && !entry.handle.is_paused()
        {
            self.inner
                .session
                .pause(&entry.handle)
                .await
                .map_err(|e| EngineError::session("cannot pause torrent", e))?;
        }
        Ok(())
    }
}
