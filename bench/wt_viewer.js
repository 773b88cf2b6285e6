// WebTorrent viewer for Kino's benchmark: adds the .torrent with the given peers as its only peers
// (no DHT, trackers, LSD, uTP, web seeds), serves the files over WebTorrent's own HTTP server
// on 127.0.0.1:PORT, prints the stream URL of file 0, and runs until killed.
// Usage: node wt_viewer.js FILE.torrent DATA_DIR IP:PORT[,IP:PORT...] HTTP_PORT
'use strict'
const fs = require('fs')
const WebTorrent = require('webtorrent')

const [torrentPath, dataDir, peers, port] = process.argv.slice(2)
// Listens on 6881 like every viewer, so the other viewers of the swarm scenario can dial it.
const client = new WebTorrent({ dht: false, tracker: false, lsd: false, webSeeds: false, utp: false, natUpnp: false, natPmp: false, torrentPort: 6881 })
client.on('error', (e) => { console.error('webtorrent error:', e.message); process.exit(1) })
const torrent = client.add(fs.readFileSync(torrentPath), { path: dataDir })
torrent.on('error', (e) => { console.error('torrent error:', e.message); process.exit(1) })
torrent.on('infoHash', () => peers.split(',').filter(Boolean).forEach((p) => torrent.addPeer(p)))
const server = torrent.createServer()
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${port}/0`)
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
console.error('webtorrent', WebTorrent.VERSION)
