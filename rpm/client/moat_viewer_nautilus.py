# "Open in moat viewer" in Nautilus (nautilus-python): opens each selected local file in a
# disposable moat-viewer qube with qvm-open-in-vm @dispvm:moat-viewer-dvm FILE.
# Licence: BSD-2-Clause (moat).
import subprocess

from gi.repository import GObject, Nautilus

TARGET = '@dispvm:moat-viewer-dvm'


class MoatViewerMenu(GObject.GObject, Nautilus.MenuProvider):
    def get_file_items(self, *args):
        # Nautilus 4 passes (files), Nautilus 3 passes (window, files).
        files = [f for f in args[-1] if f.get_uri_scheme() == 'file' and not f.is_directory()]
        if not files:
            return []
        item = Nautilus.MenuItem(name='MoatViewerMenu::open', label='Open in moat viewer',
                                 tip='Open in a disposable moat-viewer qube')
        item.connect('activate', self.open_files, files)
        return [item]

    def open_files(self, _menu, files):
        for f in files:
            path = f.get_location().get_path()
            if path:
                subprocess.Popen(['qvm-open-in-vm', TARGET, path])
