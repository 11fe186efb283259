//! Rooms hosted by the gateway for bridges that have group conversations
//! (XEP-0045), with their archive (XEP-0313).
//!
//! Each user has their own view of a room: the occupants, subject and
//! history as their own network session sees them. Several clients
//! (resources) of one user share one presence in the room behind one
//! nickname.
