// sticky-session 1.1.2's README example, unchanged but for the require.
var cluster = require('cluster'); // Only required if you want the worker id
var sticky = require('sticky-session-rs');

var server = require('http').createServer(function(req, res) {
  res.end('worker: ' + cluster.worker.id);
});

if (!sticky.listen(server, 3000)) {
  // Master code
  server.once('listening', function() {
    console.log('server started on 3000 port');
  });
} else {
  // Worker code
}
