-- skip.lua: a Wireshark / tshark dissector for SKIP (Simple Key-management for Internet Protocols).
--
--   * the SKIP header, IP protocol 57 (draft-ietf-ipsec-skip-06 s. 1.8), version 1 (draft-06,
--     "legacy") and version 2 (this project's modern profile, docs/protocol/modern-profile.md);
--     every NSID and its MKID, the algorithm names of both versions, n as a date; the rest of
--     the packet is handed to Wireshark's own ESP / AH dissectors (SPI 1);
--   * SKIP ICMP (type 39, algorithm discovery, draft-ietf-ipsec-skip-adp-00), which this project
--     also sends as IP protocol 1 inside IPv6, with the modern kp_floor field;
--   * CDP, the Certificate Discovery Protocol on UDP 1640 (draft-ietf-ipsec-cdp-01), including
--     the ephemeral DH certificate of PFS (CERT-Type 250, draft-ietf-ipsec-skip-pfs-00).
--
-- Install: copy this file into the per-user plugin directory (see docs/wireshark.md), or run
--   tshark -X lua_script:tools/wireshark/skip.lua -r capture.pcap
--
-- The tables below mirror skip/crypto/skip_numbers.py and skip/wire/nsid.py; the test
-- tests/test_wireshark_dissector.py checks them against those modules.

local SKIP_EPOCH = 788918400 -- 1995-01-01 00:00:00 UTC (draft-06 s. 5.1), in POSIX seconds
local HOUR = 3600

---------------------------------------------------------------------------------------------
-- Numbers (docs/protocol/numbers.md)
---------------------------------------------------------------------------------------------

local NSID_NAMES = {
    [0] = "none (the IP address names the principal)",
    [1] = "IPv4 address",
    [2] = "POSIX/XOPEN user id",
    [3] = "IPv6 address",
    [4] = "MD5 of DNS name",
    [5] = "MD5 of ISO DN ASN.1 encoding",
    [6] = "MD5 of arbitrary ASCII string",
    [7] = "802.x MAC address",
    [8] = "MD5 of DH public value",
    [9] = "MD5 of RFC 822 mailbox address",
    [10] = "MD5 of bank account number",
    [11] = "MD5 of NIS name",
    [250] = "EMKID (PFS ephemeral, private)",
    [251] = "private",
    [252] = "private",
    [253] = "private",
    [254] = "private",
    [255] = "private",
}

-- MKID length per NSID (draft-06 s. 4.3); private ones (250-255) come from the preference.
local ASSIGNED_MKID_LENGTHS = {
    [0] = 0, [1] = 4, [2] = 4, [3] = 16, [4] = 16, [5] = 16, [6] = 16, [7] = 6,
    [8] = 16, [9] = 16, [10] = 16, [11] = 16,
}

-- Per header version: Kij (key size, block), Crypt (key size, aead), MAC (key size) and
-- their names exactly as skip/crypto/skip_numbers.py spells them.
local PROFILES = {
    [1] = {
        label = "draft-06 (legacy)",
        kij = {
            [1] = { name = "des-cbc", key = 8, block = 8 },
            [2] = { name = "3des-ede-cbc", key = 24, block = 8 },
            [3] = { name = "idea-cbc", key = 16, block = 8 },
            [241] = { name = "safer-128sk-cbc", key = 16, block = 8 },
            [242] = { name = "rc2-40-cbc", key = 5, block = 8 },
        },
        crypt = {
            [1] = { name = "des-cbc", key = 8, rfc = "RFC 1829" },
            [2] = { name = "3des-ede-cbc", key = 24, rfc = "RFC 1851" },
            [3] = { name = "idea-cbc", key = 16 },
            [241] = { name = "safer-128sk", key = 16 },
            [242] = { name = "rc2-40-cbc", key = 5 },
        },
        mac = {
            [1] = { name = "keyed-md5", key = 16, rfc = "RFC 1828" },
            [2] = { name = "des-cbc-mac", key = 8 },
            [3] = { name = "keyed-sha", key = 20, rfc = "RFC 1852" },
        },
    },
    [2] = {
        label = "modern profile",
        kij = {
            [10] = { name = "aes-256-key-wrap", key = 32, block = 0 },
        },
        crypt = {
            [10] = { name = "aes-128-gcm-16", key = 20, aead = true, rfc = "RFC 4106" },
            [11] = { name = "aes-256-gcm-16", key = 36, aead = true, rfc = "RFC 4106" },
            [12] = { name = "chacha20-poly1305", key = 36, aead = true, rfc = "RFC 7634" },
            [13] = { name = "aes-128-cbc", key = 16, rfc = "RFC 3602" },
            [14] = { name = "aes-256-cbc", key = 32, rfc = "RFC 3602" },
        },
        mac = {
            [20] = { name = "hmac-sha2-256-128", key = 32, rfc = "RFC 4868" },
            [21] = { name = "hmac-sha2-384-192", key = 48, rfc = "RFC 4868" },
            [22] = { name = "hmac-sha2-512-256", key = 64, rfc = "RFC 4868" },
        },
    },
}
local MODERN_KP, MODERN_STAMP, KEY_WRAP_OVERHEAD = 32, 8, 8

local function is_private(nsid) return nsid >= 250 and nsid <= 255 end

local function kij_name(version, alg)
    if alg == 0 then return "none (no Kp: algorithm solicitation)" end
    local p = PROFILES[version]
    local e = p and p.kij[alg]
    if e then return e.name end
    if is_private(alg) then return "private" end
    return "unknown"
end

local function crypt_name(version, alg)
    if alg == 0 then return "none" end
    local p = PROFILES[version]
    local e = p and p.crypt[alg]
    if e then return e.name end
    if is_private(alg) then return "private" end
    return "unknown"
end

local function mac_name(version, crypt_alg, alg)
    if alg == 0 then return "none" end
    local p = PROFILES[version]
    if p and crypt_alg ~= nil and alg == crypt_alg and p.crypt[alg] and p.crypt[alg].aead then
        return "combined with Crypt Alg (AEAD)"
    end
    local e = p and p.mac[alg]
    if e then return e.name end
    if is_private(alg) then return "private" end
    return "unknown"
end

local function comp_name(alg)
    if alg == 0 then return "none" end
    if is_private(alg) then return "private" end
    return "unknown"
end

-- The EKp length the algorithm bytes imply (skip_numbers.header_ekp_length), or nil and the
-- class that makes the header unparseable.
local function ekp_length(version, kij, crypt, mac)
    local p = PROFILES[version]
    if not p then return nil, "version" end
    if kij == 0 then return 0 end
    local k = p.kij[kij]
    if not k then return nil, "Kij Alg" end
    local crypt_key = 0
    if crypt ~= 0 then
        if not p.crypt[crypt] then return nil, "Crypt Alg" end
        crypt_key = p.crypt[crypt].key
    end
    local mac_key = 0
    if mac ~= 0 then
        if mac == crypt and p.crypt[crypt] and p.crypt[crypt].aead then
            mac_key = 0
        elseif p.mac[mac] then
            mac_key = p.mac[mac].key
        else
            return nil, "MAC Alg"
        end
    end
    local kp
    if version == 2 then
        kp = (crypt_key > 0 or mac_key > 0) and MODERN_KP or 0
    else
        kp = math.max(crypt_key, mac_key)
    end
    if kp == 0 then return 0 end
    if k.block == 0 then return kp + MODERN_STAMP + KEY_WRAP_OVERHEAD end
    return math.ceil(kp / k.block) * k.block
end

local function n_date(n)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", SKIP_EPOCH + n * HOUR)
end

---------------------------------------------------------------------------------------------
-- MKID fields, shared by the SKIP header (source, destination) and CDP names
---------------------------------------------------------------------------------------------

local function mkid_fields(prefix, what)
    return {
        raw = ProtoField.bytes(prefix, what),
        ipv4 = ProtoField.ipv4(prefix .. ".ipv4", what .. " (IPv4 address)"),
        ipv6 = ProtoField.ipv6(prefix .. ".ipv6", what .. " (IPv6 address)"),
        uid = ProtoField.uint32(prefix .. ".uid", what .. " (POSIX user id)", base.DEC),
        mac = ProtoField.ether(prefix .. ".mac", what .. " (802.x MAC address)"),
        md5 = ProtoField.bytes(prefix .. ".md5", what .. " (MD5 hash)"),
        emkid = ProtoField.uint32(prefix .. ".emkid", what .. " (EMKID)", base.HEX),
    }
end

local function mkid_field_list(f, out)
    for _, k in ipairs({ "raw", "ipv4", "ipv6", "uid", "mac", "md5", "emkid" }) do
        out[#out + 1] = f[k]
    end
end

-- Adds the MKID ``range`` under ``tree`` with the interpretation its NSID gives; returns a
-- short text for the Info column.
local function add_mkid(tree, f, nsid, range)
    local item = tree:add(f.raw, range)
    local len = range:len()
    if nsid == 1 and len == 4 then
        item:add(f.ipv4, range)
        return tostring(range:ipv4())
    elseif nsid == 3 and len == 16 then
        item:add(f.ipv6, range)
        return tostring(range:ipv6())
    elseif nsid == 2 and len == 4 then
        item:add(f.uid, range)
        return "uid " .. range:uint()
    elseif nsid == 7 and len == 6 then
        item:add(f.mac, range)
        return tostring(range:ether())
    elseif nsid == 250 and len == 4 then
        item:add(f.emkid, range)
        return string.format("emkid 0x%08x", range:uint())
    elseif nsid >= 4 and nsid <= 11 and len == 16 then
        item:add(f.md5, range):append_text(" [" .. NSID_NAMES[nsid] .. "]")
        return range:bytes():tohex():lower()
    end
    return range:bytes():tohex():lower()
end

---------------------------------------------------------------------------------------------
-- The SKIP header (IP protocol 57)
---------------------------------------------------------------------------------------------

local skip = Proto("skip", "SKIP (Simple Key-management for Internet Protocols)")

local VERSION_NAMES = { [1] = "1, draft-06 (legacy)", [2] = "2, modern profile" }
local NSID_VALS = {}
for k, v in pairs(NSID_NAMES) do NSID_VALS[k] = v end

local hf = {
    version = ProtoField.uint8("skip.version", "Version", base.DEC,
        { [1] = "draft-06 (legacy)", [2] = "modern profile" }, 0xF0),
    reserved = ProtoField.uint8("skip.reserved", "Reserved", base.HEX, nil, 0x0F),
    src_nsid = ProtoField.uint8("skip.src_nsid", "Source NSID", base.DEC, NSID_VALS),
    dst_nsid = ProtoField.uint8("skip.dst_nsid", "Destination NSID", base.DEC, NSID_VALS),
    next_header = ProtoField.uint8("skip.next_header", "Next Header", base.DEC),
    n = ProtoField.uint32("skip.n", "n (hours since 1995-01-01 00:00 UTC)", base.DEC),
    n_time = ProtoField.absolute_time("skip.n_time", "Start of hour n", base.UTC),
    n_date = ProtoField.string("skip.n_date", "Start of hour n (ISO 8601)"),
    kij_alg = ProtoField.uint8("skip.kij_alg", "Kij Alg", base.DEC),
    kij_alg_name = ProtoField.string("skip.kij_alg.name", "Kij Alg name"),
    crypt_alg = ProtoField.uint8("skip.crypt_alg", "Crypt Alg", base.DEC),
    crypt_alg_name = ProtoField.string("skip.crypt_alg.name", "Crypt Alg name"),
    mac_alg = ProtoField.uint8("skip.mac_alg", "MAC Alg", base.DEC),
    mac_alg_name = ProtoField.string("skip.mac_alg.name", "MAC Alg name"),
    comp_alg = ProtoField.uint8("skip.comp_alg", "Comp Alg", base.DEC),
    comp_alg_name = ProtoField.string("skip.comp_alg.name", "Comp Alg name"),
    ekp = ProtoField.bytes("skip.ekp", "Encrypted Kp (EKp)"),
    ekp_len = ProtoField.uint16("skip.ekp_len", "EKp length", base.DEC),
    header_len = ProtoField.uint16("skip.header_len", "SKIP header length", base.DEC),
    solicitation = ProtoField.bool("skip.solicitation", "Algorithm solicitation"),
    padding = ProtoField.bytes("skip.padding", "Solicitation padding"),
}
local src_mkid = mkid_fields("skip.src_mkid", "Source MKID")
local dst_mkid = mkid_fields("skip.dst_mkid", "Destination MKID")

local fields = {}
for _, v in pairs(hf) do fields[#fields + 1] = v end
mkid_field_list(src_mkid, fields)
mkid_field_list(dst_mkid, fields)
skip.fields = fields

local ef = {
    truncated = ProtoExpert.new("skip.truncated", "SKIP header truncated",
        expert.group.MALFORMED, expert.severity.ERROR),
    bad_version = ProtoExpert.new("skip.bad_version", "Unknown SKIP header version",
        expert.group.MALFORMED, expert.severity.ERROR),
    unknown_alg = ProtoExpert.new("skip.unknown_alg",
        "Unknown algorithm: the EKp length (and so the header length) cannot be known",
        expert.group.UNDECODED, expert.severity.WARN),
    unknown_nsid = ProtoExpert.new("skip.unknown_nsid",
        "Unknown NSID: the MKID length cannot be known (set private NSIDs in the preferences)",
        expert.group.UNDECODED, expert.severity.WARN),
    reserved = ProtoExpert.new("skip.reserved_nonzero",
        "Rsvd is not 0 (a version-2 receiver refuses this packet: bad_header)",
        expert.group.PROTOCOL, expert.severity.WARN),
    next_header = ProtoExpert.new("skip.next_header_mismatch",
        "Next Header does not match the algorithms (version 2: 50 with a Crypt Alg, 51 without)",
        expert.group.PROTOCOL, expert.severity.WARN),
}
ef.payload = ProtoExpert.new("skip.payload_malformed", "Malformed payload after the SKIP header",
    expert.group.MALFORMED, expert.severity.ERROR)
skip.experts = { ef.payload, ef.truncated, ef.bad_version, ef.unknown_alg, ef.unknown_nsid, ef.reserved,
    ef.next_header }

skip.prefs.private_nsids = Pref.string("Private NSID MKID lengths", "250:4",
    "Comma-separated NSID:bytes pairs for the private name spaces 250-255 "
    .. "(250 is the PFS EMKID, 4 bytes)")

local function mkid_length(nsid)
    if ASSIGNED_MKID_LENGTHS[nsid] then return ASSIGNED_MKID_LENGTHS[nsid] end
    if is_private(nsid) then
        for a, b in string.gmatch(skip.prefs.private_nsids or "", "(%d+)%s*:%s*(%d+)") do
            if tonumber(a) == nsid then return tonumber(b) end
        end
    end
    return nil
end

-- The header version of the SKIP packet currently being dissected, for SKIP ICMP inside it.
local enclosing = { frame = -1, version = nil }

local ip_proto = DissectorTable.get("ip.proto")
local esp_dissector = Dissector.get("esp")
local ah_dissector = Dissector.get("ah")
local data_dissector = Dissector.get("data")

local function algorithm_text(name, alg, rfc)
    if rfc then return string.format("%d (%s, %s)", alg, name, rfc) end
    return string.format("%d (%s)", alg, name)
end

function skip.dissector(tvb, pinfo, tree)
    local total = tvb:len()
    pinfo.cols.protocol = "SKIP"
    local t = tree:add(skip, tvb(), "SKIP header")
    if total < 12 then
        t:add_proto_expert_info(ef.truncated, "shorter than the 12 fixed bytes")
        return
    end
    local version = tvb(0, 1):bitfield(0, 4)
    local rsvd = tvb(0, 1):bitfield(4, 4)
    local src_nsid, dst_nsid = tvb(1, 1):uint(), tvb(2, 1):uint()
    local nxt = tvb(3, 1):uint()
    local n = tvb(4, 4):uint()
    local kij, crypt, mac, comp = tvb(8, 1):uint(), tvb(9, 1):uint(), tvb(10, 1):uint(),
        tvb(11, 1):uint()
    enclosing.frame, enclosing.version = pinfo.number, version

    local vi = t:add(hf.version, tvb(0, 1))
    if not PROFILES[version] then vi:add_proto_expert_info(ef.bad_version) end
    local ri = t:add(hf.reserved, tvb(0, 1))
    if rsvd ~= 0 and version == 2 then ri:add_proto_expert_info(ef.reserved) end
    t:add(hf.src_nsid, tvb(1, 1))
    t:add(hf.dst_nsid, tvb(2, 1))
    local ni = t:add(hf.next_header, tvb(3, 1))
    local ntree = t:add(hf.n, tvb(4, 4))
    ntree:append_text(" = " .. n_date(n))
    ntree:add(hf.n_time, tvb(4, 4), NSTime.new(SKIP_EPOCH + n * HOUR, 0)):set_generated()
    ntree:add(hf.n_date, tvb(4, 4), n_date(n)):set_generated()

    local p = PROFILES[version] or {}
    local ke = p.kij and p.kij[kij]
    local ce = p.crypt and p.crypt[crypt]
    local me = p.mac and p.mac[mac]
    local kname, cname = kij_name(version, kij), crypt_name(version, crypt)
    local mname, pname = mac_name(version, crypt, mac), comp_name(comp)
    t:add(hf.kij_alg, tvb(8, 1), kij, "Kij Alg: " .. algorithm_text(kname, kij, ke and ke.rfc))
        :add(hf.kij_alg_name, tvb(8, 1), kname):set_generated()
    t:add(hf.crypt_alg, tvb(9, 1), crypt, "Crypt Alg: " .. algorithm_text(cname, crypt, ce and ce.rfc))
        :add(hf.crypt_alg_name, tvb(9, 1), cname):set_generated()
    t:add(hf.mac_alg, tvb(10, 1), mac, "MAC Alg: " .. algorithm_text(mname, mac, me and me.rfc))
        :add(hf.mac_alg_name, tvb(10, 1), mname):set_generated()
    t:add(hf.comp_alg, tvb(11, 1), comp, "Comp Alg: " .. algorithm_text(pname, comp))
        :add(hf.comp_alg_name, tvb(11, 1), pname):set_generated()

    local suite = cname .. "/" .. mname
    if ce and ce.aead and mac == crypt then suite = cname end
    if crypt == 0 then suite = mname end
    local info = string.format("SKIP v%d n=%d (%s) %s", version, n, n_date(n), suite)
    pinfo.cols.info = info

    local ekp_len, bad = ekp_length(version, kij, crypt, mac)
    if not ekp_len then
        if bad == "version" then
            t:add_proto_expert_info(ef.bad_version, "version " .. version .. ": layout unknown")
        else
            t:add_proto_expert_info(ef.unknown_alg, bad .. " unknown in version " .. version)
        end
        data_dissector:call(tvb(12):tvb(), pinfo, tree)
        return
    end
    local src_len, dst_len = mkid_length(src_nsid), mkid_length(dst_nsid)
    if not src_len or not dst_len then
        t:add_proto_expert_info(ef.unknown_nsid)
        return
    end
    local hlen = 12 + ekp_len + src_len + dst_len
    t:add(hf.ekp_len, tvb(8, 3), ekp_len):set_generated()
    if hlen > total then
        t:add_proto_expert_info(ef.truncated, string.format("needs %d bytes, has %d", hlen, total))
        return
    end
    t:set_len(hlen)
    t:add(hf.header_len, tvb(0, hlen), hlen):set_generated()
    local pos = 12
    if ekp_len > 0 then
        t:add(hf.ekp, tvb(pos, ekp_len))
        pos = pos + ekp_len
    end
    local names = {}
    if src_len > 0 then
        names[#names + 1] = "src " .. add_mkid(t, src_mkid, src_nsid, tvb(pos, src_len))
        pos = pos + src_len
    end
    if dst_len > 0 then
        names[#names + 1] = "dst " .. add_mkid(t, dst_mkid, dst_nsid, tvb(pos, dst_len))
        pos = pos + dst_len
    end
    if #names > 0 then info = info .. " " .. table.concat(names, " ") end
    t:append_text(string.format(", version %d, n %d (%s), %s/%s", version, n, n_date(n),
        cname, mname))

    if version == 2 and kij ~= 0 then
        local want = crypt ~= 0 and 50 or 51
        if nxt ~= want then ni:add_proto_expert_info(ef.next_header) end
    end
    local solicitation = kij == 0 and nxt == 59
    if solicitation then
        t:add(hf.solicitation, tvb(8, 1), true):set_generated()
        info = info .. " [algorithm solicitation]"
    end

    pinfo.cols.info = info
    if hlen == total then return hlen end
    local rest = tvb(hlen):tvb()
    local ok, err = true, nil
    if solicitation then
        tree:add(hf.padding, tvb(hlen))
    elseif nxt == 50 then
        ok, err = pcall(function() esp_dissector:call(rest, pinfo, tree) end)
    elseif nxt == 51 then
        ok, err = pcall(function() ah_dissector:call(rest, pinfo, tree) end)
    else
        ok, err = pcall(function()
            if not ip_proto:try(nxt, rest, pinfo, tree) then
                data_dissector:call(rest, pinfo, tree)
            end
        end)
    end
    if not ok then
        t:add_proto_expert_info(ef.payload, "what follows the SKIP header: " .. tostring(err))
    end
    pinfo.cols.protocol = "SKIP/" .. tostring(pinfo.cols.protocol)
    pinfo.cols.info:prepend(info .. " | ")
    return total
end

ip_proto:add(57, skip)

---------------------------------------------------------------------------------------------
-- SKIP ICMP (type 39): algorithm discovery, and the modern kp_floor notice
---------------------------------------------------------------------------------------------

local skip_icmp = Proto("skip_icmp", "SKIP ICMP (algorithm discovery)")

local ICMP_CODE_BITS = {
    { 0x80, "I", "Kij Alg unsupported" },
    { 0x40, "P", "Crypt Alg unsupported" },
    { 0x20, "M", "MAC Alg unsupported" },
    { 0x10, "C", "Comp Alg unsupported" },
    { 0x08, "R", "replay protection required" },
}

local hi = {
    type = ProtoField.uint8("skip_icmp.type", "Type", base.DEC, { [39] = "SKIP" }),
    code = ProtoField.uint8("skip_icmp.code", "Code", base.HEX),
    code_i = ProtoField.bool("skip_icmp.code.kij", "I: Kij Alg unsupported", 8, nil, 0x80),
    code_p = ProtoField.bool("skip_icmp.code.crypt", "P: Crypt Alg unsupported", 8, nil, 0x40),
    code_m = ProtoField.bool("skip_icmp.code.mac", "M: MAC Alg unsupported", 8, nil, 0x20),
    code_c = ProtoField.bool("skip_icmp.code.comp", "C: Comp Alg unsupported", 8, nil, 0x10),
    code_r = ProtoField.bool("skip_icmp.code.replay", "R: replay protection required", 8, nil,
        0x08),
    code_flags = ProtoField.string("skip_icmp.code.flags", "Code flags"),
    checksum = ProtoField.uint16("skip_icmp.checksum", "Checksum", base.HEX),
    checksum_good = ProtoField.bool("skip_icmp.checksum.good", "Checksum good"),
    version = ProtoField.uint8("skip_icmp.version", "Version", base.DEC, nil, 0xF0),
    reserved = ProtoField.uint8("skip_icmp.reserved", "Reserved", base.HEX, nil, 0x0F),
    protocol = ProtoField.uint8("skip_icmp.protocol", "Protocol (0: per MKID)", base.DEC),
    port = ProtoField.uint16("skip_icmp.port", "Port", base.DEC),
    n_kij = ProtoField.uint8("skip_icmp.kij_count", "Kij Alg count", base.DEC),
    kij = ProtoField.uint8("skip_icmp.kij", "Kij Alg", base.DEC),
    kij_name = ProtoField.string("skip_icmp.kij.name", "Kij Alg name"),
    n_crypt = ProtoField.uint8("skip_icmp.crypt_count", "Crypt Alg count", base.DEC),
    crypt = ProtoField.uint8("skip_icmp.crypt", "Crypt Alg", base.DEC),
    crypt_name = ProtoField.string("skip_icmp.crypt.name", "Crypt Alg name"),
    n_mac = ProtoField.uint8("skip_icmp.mac_count", "MAC Alg count", base.DEC),
    mac = ProtoField.uint8("skip_icmp.mac", "MAC Alg", base.DEC),
    mac_name = ProtoField.string("skip_icmp.mac.name", "MAC Alg name"),
    n_comp = ProtoField.uint8("skip_icmp.comp_count", "Comp Alg count", base.DEC),
    comp = ProtoField.uint8("skip_icmp.comp", "Comp Alg", base.DEC),
    comp_name = ProtoField.string("skip_icmp.comp.name", "Comp Alg name"),
    kp_floor = ProtoField.uint64("skip_icmp.kp_floor", "Kp floor (ms since 1970)", base.DEC),
    kp_floor_time = ProtoField.absolute_time("skip_icmp.kp_floor_time", "Kp floor", base.UTC),
    names_version = ProtoField.uint8("skip_icmp.numbers_version",
        "Algorithm numbers of SKIP version", base.DEC),
}
local icmp_fields = {}
for _, v in pairs(hi) do icmp_fields[#icmp_fields + 1] = v end
skip_icmp.fields = icmp_fields

local ei = {
    truncated = ProtoExpert.new("skip_icmp.truncated", "SKIP ICMP truncated",
        expert.group.MALFORMED, expert.severity.ERROR),
    checksum = ProtoExpert.new("skip_icmp.bad_checksum", "Bad SKIP ICMP checksum",
        expert.group.CHECKSUM, expert.severity.ERROR),
    trailing = ProtoExpert.new("skip_icmp.trailing",
        "Bytes after the lists that are not an 8-byte kp_floor",
        expert.group.MALFORMED, expert.severity.ERROR),
}
skip_icmp.experts = { ei.truncated, ei.checksum, ei.trailing }

local function internet_checksum(tvb)
    local sum, len = 0, tvb:len()
    local i = 0
    while i + 1 < len do
        sum = sum + tvb(i, 2):uint()
        i = i + 2
    end
    if i < len then sum = sum + tvb(i, 1):uint() * 256 end
    while sum > 0xFFFF do sum = bit32.band(sum, 0xFFFF) + bit32.rshift(sum, 16) end
    return bit32.band(bit32.bnot(sum), 0xFFFF)
end

local LIST_CLASSES = {
    { "kij", hi.n_kij, hi.kij, hi.kij_name, "Kij Algs" },
    { "crypt", hi.n_crypt, hi.crypt, hi.crypt_name, "Crypt Algs" },
    { "mac", hi.n_mac, hi.mac, hi.mac_name, "MAC Algs" },
    { "comp", hi.n_comp, hi.comp, hi.comp_name, "Comp Algs" },
}

-- The version whose numbers the lists use: the enclosing SKIP header's, else a guess (the
-- modern numbers are all >= 10, the legacy ones all < 10 or private).
local function numbers_version(pinfo, tvb)
    if enclosing.frame == pinfo.number and PROFILES[enclosing.version] then
        return enclosing.version, true
    end
    for i = 8, tvb:len() - 1 do
        local b = tvb(i, 1):uint()
        if b >= 10 and b < 241 then return 2, false end
    end
    return 1, false
end

local function list_name(version, cls, alg)
    if cls == "kij" then return kij_name(version, alg) end
    if cls == "crypt" then return crypt_name(version, alg) end
    if cls == "mac" then return mac_name(version, nil, alg) end
    return comp_name(alg)
end

function skip_icmp.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    pinfo.cols.protocol = "SKIP ICMP"
    local t = tree:add(skip_icmp, tvb(), "SKIP ICMP")
    if len < 12 then
        t:add_proto_expert_info(ei.truncated)
        return
    end
    local code = tvb(1, 1):uint()
    t:add(hi.type, tvb(0, 1))
    local ct = t:add(hi.code, tvb(1, 1))
    local flags = {}
    for _, bit in ipairs(ICMP_CODE_BITS) do
        if bit32.band(code, bit[1]) ~= 0 then flags[#flags + 1] = bit[2] end
    end
    ct:add(hi.code_i, tvb(1, 1))
    ct:add(hi.code_p, tvb(1, 1))
    ct:add(hi.code_m, tvb(1, 1))
    ct:add(hi.code_c, tvb(1, 1))
    ct:add(hi.code_r, tvb(1, 1))
    ct:add(hi.code_flags, tvb(1, 1), table.concat(flags)):set_generated()
    local ck = t:add(hi.checksum, tvb(2, 2))
    local good = internet_checksum(tvb) == 0
    ck:add(hi.checksum_good, tvb(2, 2), good):set_generated()
    if not good then ck:add_proto_expert_info(ei.checksum) end
    t:add(hi.version, tvb(4, 1))
    t:add(hi.reserved, tvb(4, 1))
    t:add(hi.protocol, tvb(5, 1))
    t:add(hi.port, tvb(6, 2))
    local version, known = numbers_version(pinfo, tvb)
    local vi = t:add(hi.names_version, tvb(4, 1), version)
    vi:set_generated()
    if not known then vi:append_text(" (guessed: no SKIP header in front)") end
    local pos = 8
    local summary = {}
    for _, c in ipairs(LIST_CLASSES) do
        if pos >= len then
            t:add_proto_expert_info(ei.truncated, "ends before the " .. c[5] .. " count")
            return
        end
        local count = tvb(pos, 1):uint()
        if pos + 1 + count > len then
            t:add_proto_expert_info(ei.truncated, "the " .. c[5] .. " list overruns the message")
            return
        end
        local lt = t:add(c[2], tvb(pos, 1 + count))
        lt:set_text(string.format("%s (%d)", c[5], count))
        lt:add(c[2], tvb(pos, 1))
        local names = {}
        for i = 1, count do
            local r = tvb(pos + i, 1)
            local alg = r:uint()
            local name = list_name(version, c[1], alg)
            lt:add(c[3], r, alg, string.format("%s: %d (%s)", c[5]:sub(1, -2), alg, name))
                :add(c[4], r, name):set_generated()
            names[#names + 1] = name
        end
        summary[#summary + 1] = c[1] .. "=" .. table.concat(names, ",")
        pos = pos + 1 + count
    end
    local info = "SKIP ICMP"
    if #flags > 0 then info = info .. " [" .. table.concat(flags) .. "]" end
    info = info .. " " .. table.concat(summary, " ")
    if len - pos == 8 then
        local r = tvb(pos, 8)
        local ms = r:uint64()
        t:add(hi.kp_floor, r)
        local secs = (ms / 1000):tonumber()
        local rem = (ms % 1000):tonumber()
        t:add(hi.kp_floor_time, r, NSTime.new(secs, rem * 1000000)):set_generated()
        info = info .. " kp_floor=" .. tostring(ms)
    elseif len ~= pos then
        t:add_proto_expert_info(ei.trailing, (len - pos) .. " bytes")
    end
    pinfo.cols.info = info
    return len
end

-- IP protocol 1 is shared with every other ICMP message: take type 39, hand the rest back.
local icmp_dissector = Dissector.get("icmp")
local icmp_or_skip = Proto("skip_icmp_switch", "ICMP (SKIP type 39 switch)")
function icmp_or_skip.dissector(tvb, pinfo, tree)
    if tvb:len() >= 1 and tvb(0, 1):uint() == 39 then
        return skip_icmp.dissector(tvb, pinfo, tree)
    end
    return icmp_dissector:call(tvb, pinfo, tree)
end
ip_proto:add(1, icmp_or_skip)

---------------------------------------------------------------------------------------------
-- CDP: Certificate Discovery Protocol, UDP 1640
---------------------------------------------------------------------------------------------

local cdp = Proto("skip_cdp", "SKIP Certificate Discovery Protocol")

local CDP_ACTIONS = { [0] = "Request", [1] = "Response", [2] = "Cookie required",
    [3] = "Request too large" }
local CDP_RECORD_ACTIONS = { [1] = "GET", [2] = "PUT", [100] = "GET succeeded",
    [101] = "GET failed", [102] = "PUT succeeded", [103] = "PUT failed" }
local CDP_NAME_TYPES = { [1] = "SKIP (NSID || MKID)", [2] = "PGP printable", [3] = "PGP key id",
    [4] = "DNS name", [5] = "RFC 822 mailbox", [6] = "X.509 DN" }
local CDP_CERT_TYPES = { [0] = "none", [1] = "X.509", [2] = "PGP", [3] = "Secure DNS",
    [4] = "UDH", [5] = "unsigned EC", [6] = "unsigned RSA", [7] = "X.509 CRL",
    [250] = "ephemeral DH (PFS)" }

local hc = {
    version = ProtoField.uint8("skip_cdp.version", "Version", base.DEC),
    action = ProtoField.uint8("skip_cdp.action", "Action/Status", base.DEC, CDP_ACTIONS),
    count = ProtoField.uint8("skip_cdp.count", "Number of records", base.DEC),
    reserved = ProtoField.uint8("skip_cdp.reserved", "Reserved", base.HEX),
    req_cookie = ProtoField.uint32("skip_cdp.requester_cookie", "Requester cookie", base.HEX),
    resp_cookie = ProtoField.uint32("skip_cdp.responder_cookie", "Responder cookie", base.HEX),
    record = ProtoField.bytes("skip_cdp.record", "Record"),
    rec_action = ProtoField.uint8("skip_cdp.record.action", "Action/Status", base.DEC,
        CDP_RECORD_ACTIONS),
    name_type = ProtoField.uint8("skip_cdp.record.name_type", "Name type", base.DEC,
        CDP_NAME_TYPES),
    name_len = ProtoField.uint8("skip_cdp.record.name_len", "Name length", base.DEC),
    name = ProtoField.bytes("skip_cdp.record.name", "Name"),
    name_text = ProtoField.string("skip_cdp.record.name.text", "Name (text)"),
    name_nsid = ProtoField.uint8("skip_cdp.record.nsid", "NSID", base.DEC, NSID_VALS),
    cert_type = ProtoField.uint8("skip_cdp.record.cert_type", "CERT-Type", base.DEC,
        CDP_CERT_TYPES),
    cert_len = ProtoField.uint16("skip_cdp.record.cert_len", "CERT-Length", base.DEC),
    cert = ProtoField.bytes("skip_cdp.record.cert", "Certificate"),
    -- the ephemeral certificate (CERT-Type 250, pfs-00 s. 3; docs/pfs.md)
    eph_version = ProtoField.uint8("skip_cdp.eph.version", "Ephemeral cert version", base.DEC,
        nil, 0xF0),
    eph_protocol = ProtoField.uint8("skip_cdp.eph.protocol", "Protocol", base.DEC),
    eph_port = ProtoField.uint8("skip_cdp.eph.port", "Port", base.DEC),
    eph_mac_alg = ProtoField.uint8("skip_cdp.eph.mac_alg", "Cert MAC Alg", base.DEC,
        { [1] = "keyed-md5", [3] = "keyed-sha", [20] = "hmac-sha2-256-128" }),
    eph_validity = ProtoField.uint32("skip_cdp.eph.validity", "Validity (seconds)", base.DEC),
    eph_public = ProtoField.bytes("skip_cdp.eph.public", "Ephemeral public value"),
    eph_generator = ProtoField.bytes("skip_cdp.eph.generator", "Generator"),
    eph_modulus = ProtoField.bytes("skip_cdp.eph.modulus", "Modulus"),
    eph_emkid_ij = ProtoField.uint32("skip_cdp.eph.emkid_ij", "EMKID I->J", base.HEX),
    eph_emkid_ji = ProtoField.uint32("skip_cdp.eph.emkid_ji", "EMKID J->I", base.HEX),
    eph_nonce = ProtoField.bytes("skip_cdp.eph.nonce", "Nonce"),
    eph_enc_alg = ProtoField.uint8("skip_cdp.eph.cert_enc_alg", "Cert Enc. Alg", base.DEC),
    eph_cert_type = ProtoField.uint8("skip_cdp.eph.cert_type", "Cert Type", base.DEC,
        CDP_CERT_TYPES),
    eph_cert_len = ProtoField.uint16("skip_cdp.eph.cert_len", "Encrypted Cert. Length",
        base.DEC),
    eph_cert = ProtoField.bytes("skip_cdp.eph.cert", "Long-lived certificate"),
    eph_mac = ProtoField.bytes("skip_cdp.eph.mac", "MAC"),
}
local cdp_mkid = mkid_fields("skip_cdp.record.mkid", "MKID")
local cdp_fields = {}
for _, v in pairs(hc) do cdp_fields[#cdp_fields + 1] = v end
mkid_field_list(cdp_mkid, cdp_fields)
cdp.fields = cdp_fields

local ec = {
    malformed = ProtoExpert.new("skip_cdp.malformed",
        "Malformed CDP message (a receiver refuses it whole, CDP-2)",
        expert.group.MALFORMED, expert.severity.ERROR),
}
cdp.experts = { ec.malformed }

local EPH_MAC_LENGTHS = { [1] = 16, [3] = 20, [20] = 16 }

local function dissect_ephemeral(range, tree)
    local len = range:len()
    local t = tree
    if len < 8 then
        t:add_proto_expert_info(ec.malformed, "ephemeral certificate cut short")
        return
    end
    local version = range(0, 1):bitfield(0, 4)
    t:add(hc.eph_version, range(0, 1))
    t:add(hc.eph_protocol, range(1, 1))
    t:add(hc.eph_port, range(2, 1))
    t:add(hc.eph_mac_alg, range(3, 1))
    t:add(hc.eph_validity, range(4, 4))
    local pos = 8
    for _, f in ipairs({ hc.eph_public, hc.eph_generator, hc.eph_modulus }) do
        if pos + 2 > len then
            t:add_proto_expert_info(ec.malformed, "ephemeral certificate cut short")
            return
        end
        local l = range(pos, 2):uint()
        if pos + 2 + l > len then
            t:add_proto_expert_info(ec.malformed, "ephemeral certificate field cut short")
            return
        end
        if l > 0 then t:add(f, range(pos + 2, l)) end
        pos = pos + 2 + l
    end
    local nonce = version == 2 and 16 or 0
    if pos + 8 + nonce + 4 > len then
        t:add_proto_expert_info(ec.malformed, "ephemeral certificate cut short")
        return
    end
    t:add(hc.eph_emkid_ij, range(pos, 4))
    t:add(hc.eph_emkid_ji, range(pos + 4, 4))
    pos = pos + 8
    if nonce > 0 then
        t:add(hc.eph_nonce, range(pos, nonce))
        pos = pos + nonce
    end
    t:add(hc.eph_enc_alg, range(pos, 1))
    t:add(hc.eph_cert_type, range(pos + 1, 1))
    t:add(hc.eph_cert_len, range(pos + 2, 2))
    local cl = range(pos + 2, 2):uint()
    pos = pos + 4
    if pos + cl > len then
        t:add_proto_expert_info(ec.malformed, "long-lived certificate cut short")
        return
    end
    if cl > 0 then t:add(hc.eph_cert, range(pos, cl)) end
    pos = pos + cl
    local want = EPH_MAC_LENGTHS[range(3, 1):uint()]
    if want and len - pos == want then
        t:add(hc.eph_mac, range(pos, want))
    else
        t:add_proto_expert_info(ec.malformed, "MAC length does not match Cert MAC Alg")
    end
end

local ber_syntax = DissectorTable.get("ber.syntax")

local function dissect_cert(cert_type, range, pinfo, tree)
    if cert_type == 250 then
        dissect_ephemeral(range, tree)
        return
    end
    if (cert_type == 1 or cert_type == 7) and ber_syntax then
        local name = cert_type == 1 and "Certificate" or "CertificateList"
        pcall(function() ber_syntax:try(name, range:tvb(), pinfo, tree) end)
    end
end

function cdp.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    pinfo.cols.protocol = "SKIP CDP"
    local t = tree:add(cdp, tvb(), "SKIP CDP")
    if len < 12 then
        t:add_proto_expert_info(ec.malformed, "a CDP header is 12 bytes")
        return
    end
    local action, count = tvb(1, 1):uint(), tvb(2, 1):uint()
    t:add(hc.version, tvb(0, 1))
    t:add(hc.action, tvb(1, 1))
    t:add(hc.count, tvb(2, 1))
    t:add(hc.reserved, tvb(3, 1))
    t:add(hc.req_cookie, tvb(4, 4))
    t:add(hc.resp_cookie, tvb(8, 4))
    local info = string.format("CDP %s, %d record%s, cookies 0x%08x/0x%08x",
        CDP_ACTIONS[action] or ("action " .. action), count, count == 1 and "" or "s",
        tvb(4, 4):uint(), tvb(8, 4):uint())
    local pos = 12
    local what = {}
    for i = 1, count do
        if pos + 3 > len then
            t:add_proto_expert_info(ec.malformed, "record " .. i .. " is cut short")
            break
        end
        local nl = tvb(pos + 2, 1):uint()
        if pos + 3 + nl + 3 > len then
            t:add_proto_expert_info(ec.malformed, "record " .. i .. " is cut short")
            break
        end
        local cl = tvb(pos + 3 + nl + 1, 2):uint()
        local rlen = 3 + nl + 3 + cl
        if pos + rlen > len then
            t:add_proto_expert_info(ec.malformed, "record " .. i .. "'s certificate is cut short")
            break
        end
        local ra, nt = tvb(pos, 1):uint(), tvb(pos + 1, 1):uint()
        local rt = t:add(hc.record, tvb(pos, rlen))
        rt:set_text(string.format("Record %d: %s", i, CDP_RECORD_ACTIONS[ra] or tostring(ra)))
        rt:add(hc.rec_action, tvb(pos, 1))
        rt:add(hc.name_type, tvb(pos + 1, 1))
        rt:add(hc.name_len, tvb(pos + 2, 1))
        local label = ""
        if nl > 0 then
            local nr = tvb(pos + 3, nl)
            local ni = rt:add(hc.name, nr)
            if nt == 1 then
                local nsid = nr(0, 1):uint()
                ni:add(hc.name_nsid, nr(0, 1))
                if nl > 1 then
                    label = "nsid " .. nsid .. " " .. add_mkid(ni, cdp_mkid, nsid, nr(1, nl - 1))
                else
                    label = "nsid " .. nsid
                end
            elseif nt == 2 or nt == 4 or nt == 5 then
                label = nr:string()
                ni:add(hc.name_text, nr, label)
            else
                label = nr:bytes():tohex():lower()
            end
        end
        local cp = pos + 3 + nl
        local ctype = tvb(cp, 1):uint()
        rt:add(hc.cert_type, tvb(cp, 1))
        rt:add(hc.cert_len, tvb(cp + 1, 2))
        if cl > 0 then
            local ci = rt:add(hc.cert, tvb(cp + 3, cl))
            dissect_cert(ctype, tvb(cp + 3, cl), pinfo, ci)
        end
        what[#what + 1] = string.format("%s %s%s", CDP_RECORD_ACTIONS[ra] or tostring(ra),
            label, cl > 0 and (" +" .. (CDP_CERT_TYPES[ctype] or tostring(ctype))) or "")
        pos = pos + rlen
    end
    if pos < len then
        t:add_proto_expert_info(ec.malformed, (len - pos) .. " bytes after the last record")
    end
    if #what > 0 then info = info .. ": " .. table.concat(what, "; ") end
    pinfo.cols.info = info
    return len
end

DissectorTable.get("udp.port"):add(1640, cdp)

---------------------------------------------------------------------------------------------
-- GIK: group interchange keys of the multicast extension, UDP 1660 (draft-ietf-ipsec-skip-mc-00
-- s. 1.1 as version 1; version 2 is this project's extension MC-M1, skip/wire/gik.py)
---------------------------------------------------------------------------------------------

local gik = Proto("skip_gik", "SKIP Group Interchange Key (multicast)")

local GIK_TYPES = { [1] = "Request", [2] = "Response", [3] = "Rekey" }
local GIK_REASONS = { [1] = "evict", [2] = "join", [3] = "refresh", [4] = "rebuild" }

local hg = {
    version = ProtoField.uint8("skip_gik.version", "Version", base.DEC,
        { [1] = "mc-00 (legacy)", [2] = "modern" }),
    type = ProtoField.uint8("skip_gik.type", "Type", base.DEC, GIK_TYPES),
    reserved = ProtoField.bytes("skip_gik.reserved", "Reserved"),
    group = ProtoField.bytes("skip_gik.group", "Group address (M)"),
    group_ipv4 = ProtoField.ipv4("skip_gik.group.ipv4", "Group (IPv4)"),
    group_ipv6 = ProtoField.ipv6("skip_gik.group.ipv6", "Group (IPv6)"),
    nonce = ProtoField.bytes("skip_gik.nonce", "Requester nonce"),
    epoch = ProtoField.uint32("skip_gik.epoch", "Kg epoch", base.DEC),
    previous = ProtoField.uint32("skip_gik.previous_epoch", "Previous epoch", base.DEC),
    expiry = ProtoField.uint64("skip_gik.expiry", "Expiry (raw)", base.DEC),
    expiry_time = ProtoField.absolute_time("skip_gik.expiry_time", "Expiry", base.UTC),
    interval_seconds = ProtoField.uint32("skip_gik.interval_seconds",
        "Key change interval (seconds)", base.DEC),
    interval_bytes = ProtoField.uint64("skip_gik.interval_bytes", "Key change interval (bytes)",
        base.DEC),
    kg_alg = ProtoField.uint8("skip_gik.kg_alg", "Kg Alg", base.DEC),
    kg_alg_name = ProtoField.string("skip_gik.kg_alg.name", "Kg Alg name"),
    crypt_alg = ProtoField.uint8("skip_gik.crypt_alg", "Crypt Alg", base.DEC),
    crypt_alg_name = ProtoField.string("skip_gik.crypt_alg.name", "Crypt Alg name"),
    mac_alg = ProtoField.uint8("skip_gik.mac_alg", "MAC Alg", base.DEC),
    mac_alg_name = ProtoField.string("skip_gik.mac_alg.name", "MAC Alg name"),
    comp_alg = ProtoField.uint8("skip_gik.comp_alg", "Comp Alg", base.DEC),
    comp_alg_name = ProtoField.string("skip_gik.comp_alg.name", "Comp Alg name"),
    leaf = ProtoField.uint32("skip_gik.leaf", "Leaf node", base.DEC),
    owner_key = ProtoField.bytes("skip_gik.owner_key", "Owner rekey key (Ed25519)"),
    kg = ProtoField.bytes("skip_gik.kg", "Kg"),
    path_count = ProtoField.uint8("skip_gik.path_count", "Path keys", base.DEC),
    path_node = ProtoField.uint32("skip_gik.path.node", "Node", base.DEC),
    path_key = ProtoField.bytes("skip_gik.path.key", "Node key"),
    reason = ProtoField.uint8("skip_gik.reason", "Reason", base.DEC, GIK_REASONS),
    wrap_count = ProtoField.uint16("skip_gik.wrap_count", "Wrapped keys", base.DEC),
    wrap_target = ProtoField.uint32("skip_gik.wrap.target", "Target node", base.DEC),
    wrap_under = ProtoField.uint32("skip_gik.wrap.under", "Wrapped under node", base.DEC),
    wrap_key = ProtoField.bytes("skip_gik.wrap.wrapped", "Wrapped key (RFC 3394)"),
    signature = ProtoField.bytes("skip_gik.signature", "Owner signature (Ed25519)"),
}
local gik_fields = {}
for _, v in pairs(hg) do gik_fields[#gik_fields + 1] = v end
gik.fields = gik_fields

local eg = {
    malformed = ProtoExpert.new("skip_gik.malformed", "Malformed GIK message",
        expert.group.MALFORMED, expert.severity.ERROR),
}
gik.experts = { eg.malformed }

local function gik_algorithms(t, tvb, pos, version)
    local kg, crypt, mac, comp = tvb(pos, 1):uint(), tvb(pos + 1, 1):uint(),
        tvb(pos + 2, 1):uint(), tvb(pos + 3, 1):uint()
    local kn, cn = kij_name(version, kg), crypt_name(version, crypt)
    local mn, pn = mac_name(version, crypt, mac), comp_name(comp)
    t:add(hg.kg_alg, tvb(pos, 1), kg, "Kg Alg: " .. algorithm_text(kn, kg))
        :add(hg.kg_alg_name, tvb(pos, 1), kn):set_generated()
    t:add(hg.crypt_alg, tvb(pos + 1, 1), crypt, "Crypt Alg: " .. algorithm_text(cn, crypt))
        :add(hg.crypt_alg_name, tvb(pos + 1, 1), cn):set_generated()
    t:add(hg.mac_alg, tvb(pos + 2, 1), mac, "MAC Alg: " .. algorithm_text(mn, mac))
        :add(hg.mac_alg_name, tvb(pos + 2, 1), mn):set_generated()
    t:add(hg.comp_alg, tvb(pos + 3, 1), comp, "Comp Alg: " .. algorithm_text(pn, comp))
        :add(hg.comp_alg_name, tvb(pos + 3, 1), pn):set_generated()
    return cn
end

local function gik_expiry(t, range, posix)
    local it = t:add(hg.expiry, range)
    local secs = posix
    if type(secs) ~= "number" then secs = secs:tonumber() end
    it:add(hg.expiry_time, range, NSTime.new(secs, 0)):set_generated()
    return os.date("!%Y-%m-%dT%H:%M:%SZ", secs)
end

local MAPPED = "00000000000000000000ffff"

function gik.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    pinfo.cols.protocol = "SKIP GIK"
    local t = tree:add(gik, tvb(), "SKIP GIK")
    if len < 1 then return end
    local version = tvb(0, 1):uint()
    t:add(hg.version, tvb(0, 1))
    if version == 1 then
        if len == 8 then
            t:add(hg.reserved, tvb(1, 3))
            t:add(hg.group_ipv4, tvb(4, 4))
            pinfo.cols.info = "GIK v1 Request for " .. tostring(tvb(4, 4):ipv4())
            return len
        end
        if len ~= 56 then
            t:add_proto_expert_info(eg.malformed, "a version-1 GIK message is 8 or 56 bytes")
            return
        end
        t:add(hg.reserved, tvb(1, 3))
        t:add(hg.group_ipv4, tvb(4, 4))
        -- mc-00: uint32 seconds since 1995-01-01 00:00:00, like n's epoch
        local when = gik_expiry(t, tvb(8, 4), SKIP_EPOCH + tvb(8, 4):uint())
        t:add(hg.interval_seconds, tvb(12, 4))
        t:add(hg.interval_bytes, tvb(16, 4), UInt64.new(tvb(16, 4):uint()))
        local cn = gik_algorithms(t, tvb, 20, 1)
        t:add(hg.kg, tvb(24, 32))
        pinfo.cols.info = string.format("GIK v1 Response for %s, %s, expires %s",
            tostring(tvb(4, 4):ipv4()), cn, when)
        return len
    end
    if version ~= 2 or len < 20 then
        t:add_proto_expert_info(eg.malformed, "unknown version or shorter than the header")
        return
    end
    local kind = tvb(1, 1):uint()
    t:add(hg.type, tvb(1, 1))
    t:add(hg.reserved, tvb(2, 2))
    local gi = t:add(hg.group, tvb(4, 16))
    local group
    if tvb(4, 12):bytes():tohex():lower() == MAPPED then
        gi:add(hg.group_ipv4, tvb(16, 4))
        group = tostring(tvb(16, 4):ipv4())
    else
        gi:add(hg.group_ipv6, tvb(4, 16))
        group = tostring(tvb(4, 16):ipv6())
    end
    local info = string.format("GIK v2 %s for %s", GIK_TYPES[kind] or ("type " .. kind), group)
    local body = 20
    if kind == 1 then
        if len ~= body + 20 then
            t:add_proto_expert_info(eg.malformed, "a request is 40 bytes")
            return
        end
        t:add(hg.nonce, tvb(body, 16))
        t:add(hg.epoch, tvb(body + 16, 4))
        info = info .. ", epoch held " .. tvb(body + 16, 4):uint()
    elseif kind == 2 then
        local fixed = 16 + 4 + 8 + 4 + 8 + 4 + 4 + 32 + 32 + 1
        if len < body + fixed then
            t:add_proto_expert_info(eg.malformed, "response cut short")
            return
        end
        local p = body
        t:add(hg.nonce, tvb(p, 16))
        t:add(hg.epoch, tvb(p + 16, 4))
        local when = gik_expiry(t, tvb(p + 20, 8), tvb(p + 20, 8):uint64())
        t:add(hg.interval_seconds, tvb(p + 28, 4))
        t:add(hg.interval_bytes, tvb(p + 32, 8))
        local cn = gik_algorithms(t, tvb, p + 40, 2)
        t:add(hg.leaf, tvb(p + 44, 4))
        t:add(hg.owner_key, tvb(p + 48, 32))
        t:add(hg.kg, tvb(p + 80, 32))
        local count = tvb(p + 112, 1):uint()
        t:add(hg.path_count, tvb(p + 112, 1))
        p = p + 113
        if len ~= p + count * 36 then
            t:add_proto_expert_info(eg.malformed, "path count does not match the length")
            return
        end
        for _ = 1, count do
            local pt = t:add(hg.path_node, tvb(p, 4))
            pt:add(hg.path_key, tvb(p + 4, 32))
            p = p + 36
        end
        info = string.format("%s, epoch %d, %s, leaf %d, %d path keys, expires %s", info,
            tvb(body + 16, 4):uint(), cn, tvb(body + 44, 4):uint(), count, when)
    elseif kind == 3 then
        if len < body + 20 + 64 then
            t:add_proto_expert_info(eg.malformed, "rekey cut short")
            return
        end
        local p = body
        t:add(hg.epoch, tvb(p, 4))
        t:add(hg.previous, tvb(p + 4, 4))
        local when = gik_expiry(t, tvb(p + 8, 8), tvb(p + 8, 8):uint64())
        t:add(hg.reason, tvb(p + 16, 1))
        t:add(hg.reserved, tvb(p + 17, 1))
        local count = tvb(p + 18, 2):uint()
        t:add(hg.wrap_count, tvb(p + 18, 2))
        p = p + 20
        if len ~= p + count * 48 + 64 then
            t:add_proto_expert_info(eg.malformed, "wrap count does not match the length")
            return
        end
        for _ = 1, count do
            local wt = t:add(hg.wrap_target, tvb(p, 4))
            wt:add(hg.wrap_under, tvb(p + 4, 4))
            wt:add(hg.wrap_key, tvb(p + 8, 40))
            p = p + 48
        end
        t:add(hg.signature, tvb(p, 64))
        info = string.format("%s, epoch %d (from %d), %s, %d wrapped keys, expires %s", info,
            tvb(body, 4):uint(), tvb(body + 4, 4):uint(),
            GIK_REASONS[tvb(body + 16, 1):uint()] or "reason ?", count, when)
    else
        t:add_proto_expert_info(eg.malformed, "unknown GIK message type")
    end
    pinfo.cols.info = info
    return len
end

DissectorTable.get("udp.port"):add(1660, gik)

---------------------------------------------------------------------------------------------
-- SKIP-in-UDP (skipd's daemon.udp_port; docs/skipd.md): the whole protocol-57 IP datagram is
-- the UDP payload. The port is configured, not assigned, so the payload is recognised by a
-- heuristic (an IPv4 / IPv6 header of protocol 57 whose length is the payload's), by the
-- preference skip.udp_port, or by Decode As.
---------------------------------------------------------------------------------------------

local skip_udp = Proto("skip_udp", "SKIP-in-UDP")
local hu = {
    inner = ProtoField.uint8("skip_udp.ip_version", "Encapsulated IP version", base.DEC),
}
skip_udp.fields = { hu.inner }
skip_udp.prefs.port = Pref.uint("UDP port", 0, "SKIP-in-UDP port of skipd (daemon.udp_port); "
    .. "0: recognise SKIP-in-UDP by its content only")

local ipv4_dissector = Dissector.get("ip")
local ipv6_dissector = Dissector.get("ipv6")

local function looks_like_skip_in_udp(tvb)
    local len = tvb:len()
    if len < 20 then return nil end
    local v = tvb(0, 1):bitfield(0, 4)
    if v == 4 then
        local ihl = tvb(0, 1):bitfield(4, 4) * 4
        if ihl >= 20 and len >= ihl + 12 and tvb(9, 1):uint() == 57 and tvb(2, 2):uint() == len then
            return 4
        end
    elseif v == 6 and len >= 40 + 12 then
        -- Next Header 57 directly (extension headers in between are not guessed at)
        if tvb(6, 1):uint() == 57 and tvb(4, 2):uint() + 40 == len then return 6 end
    end
    return nil
end

local function dissect_skip_udp(tvb, pinfo, tree, version)
    local t = tree:add(skip_udp, tvb(0, 0))
    t:add(hu.inner, tvb(0, 1), version):set_generated()
    if version == 6 then
        ipv6_dissector:call(tvb, pinfo, tree)
    else
        ipv4_dissector:call(tvb, pinfo, tree)
    end
    pinfo.cols.protocol = "SKIP-in-UDP/" .. tostring(pinfo.cols.protocol)
    return tvb:len()
end

function skip_udp.dissector(tvb, pinfo, tree)
    if tvb:len() < 1 then return 0 end
    local version = tvb(0, 1):bitfield(0, 4)
    return dissect_skip_udp(tvb, pinfo, tree, version == 6 and 6 or 4)
end

local function skip_udp_heuristic(tvb, pinfo, tree)
    local version = looks_like_skip_in_udp(tvb)
    if not version then return false end
    dissect_skip_udp(tvb, pinfo, tree, version)
    return true
end
skip_udp:register_heuristic("udp", skip_udp_heuristic)

local udp_port_table = DissectorTable.get("udp.port")
udp_port_table:add_for_decode_as(skip_udp)
local registered_udp_port = 0
function skip_udp.prefs_changed()
    if registered_udp_port ~= 0 then udp_port_table:remove(registered_udp_port, skip_udp) end
    registered_udp_port = skip_udp.prefs.port
    if registered_udp_port ~= 0 then udp_port_table:add(registered_udp_port, skip_udp) end
end
