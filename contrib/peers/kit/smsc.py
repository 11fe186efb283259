"""A test SMSC on the SMPP 3.4 server of PyPI's smpp34 (not ours): binds
from any ESME, accepts submit_sm, records each in DIR/submitted.jsonl and
answers with delivery receipts; a control HTTP port lets tests inject texts
from phones and receipts.

Rules by destination number: ...0000 -> submit_sm refused (ESME_RINVDSTADR);
...666 -> receipt UNDELIV err:011; ...999 -> no receipt until POST /dlr;
anything else -> receipt DELIVRD (when registered_delivery asks for one).

Control (JSON in and out):
  POST /mo {"from","to","text", "coding": "auto"|"gsm"|"ucs2", "split": N}
       -> {"sent": parts}      the text as deliver_sm, in N-character parts
  POST /dlr {"message_id","stat"}   a receipt for an earlier submit_sm
  POST /throttle {"count": N}       refuse the next N submit_sm (ESME_RTHROTTLED)
  GET /sessions                     bound ESMEs
"""
import argparse
import asyncio
import json
import os
import random
import time
from http import HTTPStatus

import smpp34

GSM = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
       "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
           "]": 0x3E, "|": 0x40, "€": 0x65}


def gsm_encode(text):
    out = bytearray()
    for c in text:
        if c in GSM_EXT:
            out += bytes([0x1B, GSM_EXT[c]])
        elif c != "\x1b" and c in GSM:
            out.append(GSM.index(c))
        else:
            return None
    return bytes(out)


class Smsc:
    def __init__(self, args):
        self.args = args
        self.server = smpp34.Server(host="127.0.0.1", port=args.port, system_id="TestSMSC")
        self.sessions = {}
        self.pending = {}          # message_id -> (session, source, dest)
        self.throttle = 0
        self.log = open(os.path.join(args.dir, "submitted.jsonl"), "a", buffering=1)
        self.prefix = f"{int(time.time()):x}{random.randrange(16**4):04x}"
        self.counter = 0
        self.ref = random.randrange(256)
        self.window = asyncio.Semaphore(8)

    def esme(self):
        live = [s for s in self.sessions.values() if s.can_receive]
        return live[-1] if live else None

    async def deliver(self, esme=None, **kw):
        """deliver_sm to `esme` or the newest bound ESME: at most 8 in flight
        (smpp34's window), retried while the ESME is busy, sessions that died
        forgotten. None when no ESME is bound."""
        for attempt in range(50):
            target = esme if (esme is not None and esme.can_receive) else self.esme()
            if target is None:
                return None
            try:
                async with self.window:
                    return await target.deliver_sm(**kw)
            except smpp34.SmppError:
                if not target.can_receive:
                    self.sessions.pop(target.session_id, None)
                    esme = None
                await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError("the ESME kept refusing deliver_sm")

    async def run(self):
        await self.server.start()
        while True:
            ev = await self.server.next()
            if isinstance(ev, smpp34.Esme):
                self.sessions[ev.session_id] = ev
            elif isinstance(ev, smpp34.Unbound):
                self.sessions.pop(ev.session_id, None)
            elif isinstance(ev, smpp34.SubmitSmEvent):
                self.submit(ev)

    def submit(self, ev):
        dest = ev.destination_addr
        if self.throttle > 0:
            self.throttle -= 1
            ev.reject(smpp34.ESME_RTHROTTLED)
            return
        if dest.endswith("0000"):
            ev.reject(smpp34.ESME_RINVDSTADR)
            return
        self.counter += 1
        mid = f"{self.prefix}{self.counter:06x}"
        ev.accept(mid)
        self.log.write(json.dumps({
            "t": time.time(), "message_id": mid, "session": ev.session_id,
            "source": ev.source_addr, "dest": dest, "data_coding": ev.data_coding,
            "esm_class": ev.esm_class, "registered_delivery": ev.registered_delivery,
            "short_message": ev.short_message.hex(),
        }) + "\n")
        if ev.registered_delivery & 0x03:
            self.pending[mid] = (ev.session_id, ev.source_addr, dest)
            if not dest.endswith("999"):
                stat = "UNDELIV" if dest.endswith("666") else "DELIVRD"
                asyncio.get_running_loop().create_task(self.receipt(mid, stat, delay=0.05))

    async def receipt(self, mid, stat, delay=0.0):
        if delay:
            await asyncio.sleep(delay)
        sess, source, dest = self.pending.pop(mid, (None, "", ""))
        if sess is None:
            return False
        err = "011" if stat == "UNDELIV" else "000"
        now = time.strftime("%y%m%d%H%M")
        text = (f"id:{mid} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
                f"submit date:{now} done date:{now} stat:{stat} err:{err} text:")
        r = await self.deliver(self.sessions.get(sess), destination_addr=source or "0", source_addr=dest,
                               esm_class=0x04, short_message=text.encode(),
                               tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, mid.encode() + b"\0")])
        return r is not None

    async def mo(self, req):
        text, coding = req["text"], req.get("coding", "auto")
        data = None if coding == "ucs2" else gsm_encode(text)
        if coding == "gsm" and data is None:
            return HTTPStatus.BAD_REQUEST, {"error": "not GSM 03.38"}
        if data is not None:
            dc, unit = 0, 1
        else:
            data, dc, unit = text.encode("utf-16-be"), 8, 2
        split = int(req.get("split", 0))
        parts = [data]
        if split:
            size = split * unit
            parts = [data[i:i + size] for i in range(0, len(data), size)]
        self.ref = (self.ref + 1) % 256
        t0 = time.time()
        for i, p in enumerate(parts):
            esm, sm = 0, p
            if len(parts) > 1:
                esm, sm = 0x40, bytes([5, 0, 3, self.ref, len(parts), i + 1]) + p
            r = await self.deliver(destination_addr=req["to"].lstrip("+"), source_addr=req["from"].lstrip("+"),
                                      source_addr_ton=1 if req["from"].startswith("+") else 0,
                                      esm_class=esm, data_coding=dc, short_message=sm)
            if r is None:
                return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no ESME bound"}
            if not r.is_success:
                return HTTPStatus.BAD_GATEWAY, {"error": f"deliver_sm refused: {r.command_status}", "part": i + 1}
        return HTTPStatus.OK, {"sent": len(parts), "t": t0, "acked": time.time()}

    async def control(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            if method == "POST" and path == "/mo":
                status, out = await self.mo(body)
            elif method == "POST" and path == "/dlr":
                ok = await self.receipt(body["message_id"], body.get("stat", "DELIVRD"))
                status, out = (HTTPStatus.OK if ok else HTTPStatus.NOT_FOUND), {"sent": ok}
            elif method == "POST" and path == "/throttle":
                self.throttle = int(body.get("count", 1))
                status, out = HTTPStatus.OK, {"throttle": self.throttle}
            elif method == "GET" and path == "/sessions":
                status, out = HTTPStatus.OK, {"sessions": [s.system_id for s in self.sessions.values()]}
            else:
                status, out = HTTPStatus.NOT_FOUND, {"error": f"no {method} {path}"}
        except Exception as e:  # a test gets the reason instead of a hang
            status, out = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": repr(e)}
        data = json.dumps(out).encode()
        writer.write(f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
        writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control", type=int, required=True)
    p.add_argument("--dir", required=True)
    args = p.parse_args()
    smsc = Smsc(args)
    await asyncio.start_server(smsc.control, "127.0.0.1", args.control)
    await smsc.run()


if __name__ == "__main__":
    asyncio.run(main())
