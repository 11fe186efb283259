-- Prosody configuration for Ferry (Prosody 0.12+). Add these parts to your
-- prosody.cfg.lua; replace example.org with your domain and the secrets
-- with long random strings (the same as in ferry.toml: [irc] secret …).
--
-- mod_privilege (XEP-0356) comes from prosody-modules: Debian/Ubuntu
-- `apt install prosody-modules`, or `prosodyctl install mod_privilege` (Prosody 0.12+).
-- Without it Ferry still works: contacts are offered with XEP-0144 roster
-- item exchange or a subscription request instead of being added directly,
-- and the user is told which applies.

-- Load mod_privilege on your user host(s): it is what grants the rights.
modules_enabled = {
  -- … your other modules …
  "privilege";
}

VirtualHost "example.org"
  -- What each gateway may do for the users of this host.
  privileged_entities = {
    ["irc.example.org"] = {
      -- read and edit users' rosters: put the people they talk to on IRC in
      -- their contact list directly (roster push), keep names in sync
      roster = "both";
      -- send messages on behalf of users: what they wrote from another
      -- client of the foreign network shows up as sent by them (carbons)
      message = "outgoing";
      -- receive the presence of users' contacts, so the gateway knows who
      -- is online without asking every user to share presence with it
      presence = "roster";
      iq = {
        -- publish avatars, nicknames and bookmarks in users' PEP (XEP-0163)
        ["http://jabber.org/protocol/pubsub"] = "both";
        ["http://jabber.org/protocol/pubsub#owner"] = "set";
        -- request HTTP upload slots (XEP-0363) so files from the foreign
        -- network are stored on your upload service
        ["urn:xmpp:http:upload:0"] = "get";
      };
    };
    -- the same block for every other bridge you run:
    ["matrix.example.org"] = {
      roster = "both"; message = "outgoing"; presence = "roster";
      iq = {
        ["http://jabber.org/protocol/pubsub"] = "both";
        ["http://jabber.org/protocol/pubsub#owner"] = "set";
        ["urn:xmpp:http:upload:0"] = "get";
      };
    };
  }

-- One external component (XEP-0114) per bridge. Ferry connects to Prosody's
-- component port (default 5347, on localhost: component_interfaces).
Component "irc.example.org"
  component_secret = "CHANGE-ME-irc"
  modules_enabled = { "privilege" }

Component "matrix.example.org"
  component_secret = "CHANGE-ME-matrix"
  modules_enabled = { "privilege" }

-- Optional: an upload service (XEP-0363) for attachments.
-- Component "upload.example.org" "http_file_share"
--   http_file_share_size_limit = 100*1024*1024

-- Notes
-- * Components on subdomains of a host are listed in its service discovery,
--   so users find the gateways in their client's "discover services".
-- * Keep the component port on localhost (the default component_interfaces)
--   or firewall it: the secret is all that protects it.
-- * The iq permission needs mod_privilege from prosody-modules newer than
--   2022. That version announces the iq namespaces nested in one another;
--   Ferry reads them either way.
