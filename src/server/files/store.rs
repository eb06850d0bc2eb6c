//! The file store's bookkeeping: rooms, stored files, partial uploads.
//!
//! Pure state behind one mutex. Its methods decide and return the paths the
//! driver must create, rename or delete; the driver does that file-system
//! work after the lock is released, off the executor (`smol::unblock`).
//! Paths are built from numbers only (`room-<n>/<id>[.part]`), never from a
//! client's file or room name.

use std::collections::HashMap;
use std::path::PathBuf;

use smol::channel::Sender;

use super::core::UploadCore;
use crate::proto::text::RoomKey;
use crate::proto::{FileInfo, MAX_FILES_PER_ROOM};
use crate::server::core::SessionId;
use crate::server::directory::Entry;

pub(super) struct Stored {
    pub info: FileInfo,
    /// The room's key.
    pub room: RoomKey,
    pub sender: SessionId,
    pub to: Option<SessionId>,
    pub path: PathBuf,
    /// Private, and its recipient was away when it was stored: offered to
    /// them when their session comes back (the host gives a member who
    /// rejoins with their token the same session).
    pub pending: bool,
}

pub(super) struct Partial {
    pub room: RoomKey,
    pub sender: SessionId,
    pub sender_name: String,
    pub name: String,
    pub to: Option<(SessionId, String)>,
    pub path: PathBuf,
    pub core: UploadCore,
    /// Set while a stream serves this upload; firing it makes that stream
    /// let go (the client reconnected).
    pub busy: Option<Sender<()>>,
}

pub(super) struct RoomFiles {
    pub dir: PathBuf,
}

/// Rooms, files and uploads.
pub(super) struct State {
    root: PathBuf,
    pub rooms: HashMap<RoomKey, RoomFiles>,
    room_seq: u64,
    pub files: HashMap<u64, Stored>,
    pub uploads: HashMap<u64, Partial>,
    next_id: u64,
}

impl State {
    pub fn new(root: PathBuf) -> State {
        State {
            root,
            rooms: HashMap::new(),
            room_seq: 0,
            files: HashMap::new(),
            uploads: HashMap::new(),
            next_id: 1,
        }
    }

    /// Whether `who` may see `f`: same room, and shared with the room or
    /// privately with (or from) them.
    pub fn visible(f: &Stored, who: &Entry) -> bool {
        f.room == who.room_key && f.to.is_none_or(|to| to == who.session || f.sender == who.session)
    }

    /// The files `who` may see, oldest first.
    pub fn list(&self, who: &Entry) -> Vec<FileInfo> {
        let mut files: Vec<FileInfo> = self
            .files
            .values()
            .filter(|f| State::visible(f, who))
            .map(|f| f.info.clone())
            .collect();
        files.sort_by_key(|f| f.id);
        files
    }

    /// Registers a new upload (busy with `cancel`) in `who`'s room; returns
    /// its id and where its bytes go (the room's directory, then the
    /// `.part` file: the driver makes both).
    pub fn begin_upload(
        &mut self,
        who: &Entry,
        name: String,
        to: Option<(SessionId, String)>,
        core: UploadCore,
        cancel: Sender<()>,
    ) -> (u64, PathBuf, PathBuf) {
        let room = who.room_key.clone();
        let id = self.next_id;
        self.next_id += 1;
        let dir = match self.rooms.get(&room) {
            Some(r) => r.dir.clone(),
            None => {
                self.room_seq += 1;
                let dir = self.root.join(format!("room-{}", self.room_seq));
                self.rooms.insert(room.clone(), RoomFiles { dir: dir.clone() });
                dir
            }
        };
        let path = dir.join(format!("{id}.part"));
        self.uploads.insert(
            id,
            Partial {
                room,
                sender: who.session,
                sender_name: who.name.clone(),
                name,
                to,
                path: path.clone(),
                core,
                busy: Some(cancel),
            },
        );
        (id, dir, path)
    }

    /// Forgets a room's files and its idle partial uploads, and the room
    /// itself once no upload runs in it; returns what to delete (files,
    /// then the directory if the room went).
    pub fn purge(&mut self, room: &RoomKey) -> (Vec<PathBuf>, Option<PathBuf>) {
        let mut paths = Vec::new();
        let gone: Vec<u64> =
            self.files.iter().filter(|(_, f)| f.room == *room).map(|(k, _)| *k).collect();
        for id in gone {
            if let Some(f) = self.files.remove(&id) {
                paths.push(f.path);
            }
        }
        let idle: Vec<u64> = self
            .uploads
            .iter()
            .filter(|(_, u)| u.room == *room && u.busy.is_none())
            .map(|(k, _)| *k)
            .collect();
        for id in idle {
            if let Some(u) = self.uploads.remove(&id) {
                paths.push(u.path);
            }
        }
        let busy = self.uploads.values().any(|u| u.room == *room);
        let dir = if busy { None } else { self.rooms.remove(room).map(|r| r.dir) };
        (paths, dir)
    }

    /// Records a verified, renamed upload and bounds its room's store (the
    /// oldest files go first); returns the paths of files pushed out.
    pub fn store(&mut self, id: u64, stored: Stored) -> Vec<PathBuf> {
        let room = stored.room.clone();
        self.files.insert(id, stored);
        let mut ids: Vec<u64> =
            self.files.iter().filter(|(_, f)| f.room == room).map(|(k, _)| *k).collect();
        let mut out = Vec::new();
        if ids.len() > MAX_FILES_PER_ROOM {
            ids.sort_unstable();
            for old in &ids[..ids.len() - MAX_FILES_PER_ROOM] {
                if let Some(f) = self.files.remove(old) {
                    out.push(f.path);
                }
            }
        }
        out
    }
}
