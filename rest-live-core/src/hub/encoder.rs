//! How a subscriber's events become bytes. The hub does not know any wire format: each
//! subscriber registers with an [`EventEncoder`] (the wire formats of `crate::protocol` implement
//! it), and the hub encodes each distinct frame once per encoder, audience and action.

use bytes::Bytes;

use crate::store::changelog::ChangeAction;

/// One event, as an encoder sees it. `subscription` and `data` are JSON text already (from the
/// subscription and the change log), so a frame is assembled without re-encoding the row.
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    /// The stream of the change.
    pub stream: &'a str,
    /// The resource's model label (`"todolist.Task"`).
    pub label: &'a str,
    /// The event, relative to the subscription (a group's arrival is a `create`).
    pub action: ChangeAction,
    /// The subscription's id, as JSON text (its `request_id`).
    pub subscription: &'a str,
    pub seq: i64,
    /// The object, as the audience sees it (JSON text).
    pub data: &'a str,
}

/// An event frame with a hole for the subscription's id: `head`, the id (JSON text), `tail`.
/// Encoded once per audience and event, it makes each subscriber's frame with one allocation and
/// three copies, whatever the format.
#[derive(Debug, Clone)]
pub struct Spliced {
    pub head: Bytes,
    pub tail: Bytes,
}

impl Spliced {
    /// The frame of the subscription with this id (JSON text).
    pub fn frame(&self, subscription: &str) -> Bytes {
        let mut out =
            bytes::BytesMut::with_capacity(self.head.len() + subscription.len() + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(subscription.as_bytes());
        out.extend_from_slice(&self.tail);
        out.freeze()
    }
}

/// Encodes events in one wire format.
pub trait EventEncoder: Send + Sync + 'static {
    /// The event frame.
    fn encode(&self, event: &EventParts<'_>) -> Bytes;

    /// The event frame around the subscription's id, for formats whose frames name it (the
    /// bytes of [`Spliced::frame`] must be those of [`EventEncoder::encode`]); `None` to encode
    /// each frame whole.
    fn spliced(&self, event: &EventParts<'_>) -> Option<Spliced> {
        let _ = event;
        None
    }

    /// Which format this is, to tell encoders apart (their statics are zero-sized, so their
    /// addresses may coincide); not to be overridden.
    #[doc(hidden)]
    fn format(&self) -> std::any::TypeId {
        std::any::TypeId::of::<Self>()
    }

    /// Whether frames name the subscription (its `request_id`): then each subscription gets a
    /// frame of its own; otherwise subscribers of one audience share one frame.
    fn names_subscription(&self) -> bool {
        true
    }

    /// Whether a deletion carries the object as the subscriber last saw it, rather than only
    /// `{"pk": …}`.
    fn full_deletes(&self) -> bool {
        false
    }
}
